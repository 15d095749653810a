"""Where datasets come from. Each dataset in config names one source, and every source writes the
same `resources/datasets/<name>` layout (`robustft.data`), so everything downstream is unchanged:

* `generator`: the procedural mini world (`generated.py`);
* `download`: files fetched with checksums (`fetch.py`), unpacked, image folders inside (`folders.py`);
* `path`: image folders the user already has (ImageNet), checked for the expected layout.
"""
