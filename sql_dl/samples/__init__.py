"""Real images that ship inside registry wheels (scikit-image, scikit-learn), and deliberately awkward
ones, for the demo, the tests, calibration and benchmarks."""
