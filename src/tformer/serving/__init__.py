"""The HTTP side of tformer: ``tformer serve RUN_DIR`` (FastAPI + uvicorn, the ``serve`` extra).

    limits.py    what one request may ask for (text count, text length, beam size, ...)
    schemas.py   the request and response models (pydantic, unknown fields rejected)
    batcher.py   gathers concurrent requests into one model call, off the event loop
    translation.py   a translation run's routes: /translate, /attention (every attention map)
    predictions.py   any other run's route, /predict or /generate, picked by its predictor (and /attention of
                 a text classifier)
    app.py       create_app(served, limits): the service, the error messages, /health, /info, the page
    static/      index.html (translation) and predict.html (the other tasks): the page at ``/`` (inline
                 JS/CSS, works offline)

Only limits.py can be imported without FastAPI installed.
"""
