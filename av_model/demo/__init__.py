"""`avgen demo`: the main job end to end on the embedded default (`run`), and the summary of claims
beside their floors that it writes and prints (`summary`). It stands above every package: it runs the
`avgen` commands and opens the rating app's store.
"""
