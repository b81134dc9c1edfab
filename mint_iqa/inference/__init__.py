"""Inference: what turns images and prompts into scores, explanations, damage maps and word support.

`scoring` (the trained scorer: decode, read native windows, batch), `assess` (both stages behind one
call), `api` (`mint_iqa.load()`), `predict` (tables for `mint-iqa score`), `batch` (chunked jobs for the
flows) and `serving/` (the MLflow pyfunc model and the REST guard). Layers inside it run the same way as
across the package: serving and predict sit on the API, the API on assessment, assessment on scoring.
"""
