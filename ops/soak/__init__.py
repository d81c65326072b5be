"""`s2st bench soak`: a long run of real-time speech through the real stack, with faults."""
