"""The live room page: a Starlette app serving one page and one websocket per room."""
