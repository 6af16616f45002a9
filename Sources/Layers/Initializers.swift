import TensorCore

/// Weight initializers (He et al. 2015; Glorot & Bengio 2010), with PyTorch's conventions
/// for fan-in/fan-out and gains.
public enum Init {
    /// PyTorch's `calculate_gain`: relu sqrt(2), leaky_relu sqrt(2 / (1 + a^2)), tanh 5/3, linear/sigmoid 1.
    public enum Nonlinearity: Sendable { case linear, sigmoid, tanh, relu, leakyRelu(Double) }

    public static func gain(_ n: Nonlinearity) -> Double {
        switch n {
        case .linear, .sigmoid: return 1
        case .tanh: return 5.0 / 3
        case .relu: return 2.0.squareRoot()
        case .leakyRelu(let a): return (2 / (1 + a * a)).squareRoot()
        }
    }

    /// Fan-in and fan-out of a weight shape: [out, in] or [out, in/groups, kh, kw].
    public static func fans(_ shape: [Int]) -> (fanIn: Int, fanOut: Int) {
        precondition(shape.count >= 2, "Init.fans: need at least 2 dimensions, got \(shapeString(shape))")
        let receptive = shape.dropFirst(2).reduce(1, *)
        return (shape[1] * receptive, shape[0] * receptive)
    }

    /// U(-b, b) with b = gain * sqrt(3 / fanIn).
    public static func kaimingUniform(_ shape: [Int], nonlinearity: Nonlinearity = .leakyRelu(0), generator: Generator = .default) -> Tensor {
        let b = gain(nonlinearity) * (3.0 / Double(max(fans(shape).fanIn, 1))).squareRoot()
        return Tensor.rand(shape, low: -b, high: b, generator: generator)
    }

    /// N(0, std^2) with std = gain / sqrt(fanIn).
    public static func kaimingNormal(_ shape: [Int], nonlinearity: Nonlinearity = .relu, generator: Generator = .default) -> Tensor {
        Tensor.randn(shape, std: gain(nonlinearity) / Double(max(fans(shape).fanIn, 1)).squareRoot(), generator: generator)
    }

    /// U(-b, b) with b = gain * sqrt(6 / (fanIn + fanOut)).
    public static func xavierUniform(_ shape: [Int], gain g: Double = 1, generator: Generator = .default) -> Tensor {
        let (i, o) = fans(shape)
        let b = g * (6.0 / Double(max(i + o, 1))).squareRoot()
        return Tensor.rand(shape, low: -b, high: b, generator: generator)
    }

    /// N(0, std^2) with std = gain * sqrt(2 / (fanIn + fanOut)).
    public static func xavierNormal(_ shape: [Int], gain g: Double = 1, generator: Generator = .default) -> Tensor {
        let (i, o) = fans(shape)
        return Tensor.randn(shape, std: g * (2.0 / Double(max(i + o, 1))).squareRoot(), generator: generator)
    }

    /// PyTorch's default for Linear and Conv weights: kaiming_uniform with a = sqrt(5), i.e. U(-1/sqrt(fanIn), 1/sqrt(fanIn)).
    public static func torchDefaultWeight(_ shape: [Int], generator: Generator = .default) -> Tensor {
        kaimingUniform(shape, nonlinearity: .leakyRelu(5.0.squareRoot()), generator: generator)
    }

    /// PyTorch's default bias: U(-1/sqrt(fanIn), 1/sqrt(fanIn)).
    public static func torchDefaultBias(_ count: Int, fanIn: Int, generator: Generator = .default) -> Tensor {
        let b = fanIn > 0 ? 1 / Double(fanIn).squareRoot() : 0
        return Tensor.rand([count], low: -b, high: b, generator: generator)
    }
}
