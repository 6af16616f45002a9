import TensorCore

/// Conv rows for `loom bench` (filled in once conv2d lands).
func convBenchRows(_ suite: BenchSuite) -> [BenchRow] { [] }
