"""The evaluation protocol shared by ``jn-propagate``, the benchmarks, the features work and the viewer."""
