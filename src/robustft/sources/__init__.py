"""Where datasets come from. Each dataset in config names one source, and every source writes the
same `resources/datasets/<name>` layout (`robustft.data`), so everything downstream is unchanged:

* `generator`: the procedural mini world (`generated.py`);
* `download`: files fetched with checksums (`fetch.py`), unpacked, image folders inside (`folders.py`);
* `path`: image folders the user already has (ImageNet), checked for the expected layout.

The package itself imports nothing: a job that prepares a dataset must not hash (and rerun for) the
checkpoint code that `registry` (every file a config fetches) reaches.
"""
