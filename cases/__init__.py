"""Paper cases (YAML, one per paper with a performance claim). The case library and its
loader arrive with the pattern library; this package ships the YAML files as data."""
