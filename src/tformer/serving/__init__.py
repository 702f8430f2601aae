"""The HTTP side of tformer: ``tformer serve RUN_DIR`` (FastAPI + uvicorn, the ``serve`` extra).

    limits.py    what one request may ask for (text count, text length, beam size, ...)
    schemas.py   the request and response models (pydantic, unknown fields rejected)
    batcher.py   gathers concurrent /translate requests into one model call, off the event loop
    app.py       create_app(translator, limits): the routes, the error messages, the web page
    static/      index.html: the page at ``/`` (inline JS/CSS, works offline)

Only limits.py can be imported without FastAPI installed.
"""
