"""Coverage-guided fuzzing of every parser of untrusted bytes (issue 13).

* :mod:`fuzz.targets`: the registry, ``TARGETS`` (name -> function of one input), importable
  without atheris so the ordinary test suite can replay ``fuzz/corpus`` and ``fuzz/crashers``;
* :mod:`fuzz.run`: runs one target or all under atheris (``scripts/fuzz [TARGET] [--seconds N]``).

A target feeds its input, cut into arbitrary chunks, to a fresh parser or engine and accepts only
the errors that parser documents; any other exception, more than 1 s for one input, or unbounded
memory is a finding.  A finding's input is kept in ``fuzz/crashers/<target>/`` as a regression input.
"""
