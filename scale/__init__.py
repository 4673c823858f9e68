"""Scale-out on a Ray cluster (``pip install 'lipstream[ray]'``; used only under ``--ray``).

scale sits above the studio: it imports ``studio`` and the models, never the other
way round, and nothing on the default path imports it (tests/test_layout.py).
"""
