import TensorCore

/// Layer normalisation (Ba et al. 2016), PyTorch's `nn.LayerNorm`.
///
/// Normalises over the trailing dims given by `normalizedShape`:
/// y = (x − mean) / sqrt(var + eps) · weight + bias, with the biased variance. Input
/// [*, normalizedShape...]; weight (init 1) and bias (init 0) have shape `normalizedShape`
/// when `elementwiseAffine`.
public final class LayerNorm: Module {
    public let weight: Parameter?
    public let bias: Parameter?
    public let normalizedShape: [Int]
    public let eps: Double

    public init(_ normalizedShape: [Int], eps: Double = 1e-5, elementwiseAffine: Bool = true, bias: Bool = true) {
        precondition(!normalizedShape.isEmpty && normalizedShape.allSatisfy { $0 > 0 },
                     "LayerNorm: normalizedShape \(normalizedShape) must be non-empty with positive extents")
        precondition(eps >= 0, "LayerNorm: eps \(eps) must be non-negative")
        self.normalizedShape = normalizedShape
        self.eps = eps
        weight = elementwiseAffine ? Parameter(Tensor.ones(normalizedShape)) : nil
        self.bias = elementwiseAffine && bias ? Parameter(Tensor.zeros(normalizedShape)) : nil
    }

    /// Normalises over the last dimension of size `size`.
    public convenience init(_ size: Int, eps: Double = 1e-5, elementwiseAffine: Bool = true) {
        self.init([size], eps: eps, elementwiseAffine: elementwiseAffine)
    }

    public override func forward(_ x: Tensor) -> Tensor {
        let k = normalizedShape.count
        precondition(x.rank >= k && Array(x.shape.suffix(k)) == normalizedShape,
                     "LayerNorm(\(normalizedShape)): input \(shapeString(x.shape)) does not end with \(shapeString(normalizedShape))")
        let dims = Array((x.rank - k)..<x.rank)
        let mean = x.mean(dims: dims, keepDim: true)
        let v = x.variance(dims: dims, correction: 0, keepDim: true)
        var y = (x - mean) * (v + eps).rsqrt()
        if let w = weight { y = y * (w.value.dtype == x.dtype ? w.value : w.value.to(x.dtype)) }
        if let b = bias { y = y + (b.value.dtype == x.dtype ? b.value : b.value.to(x.dtype)) }
        return y
    }
}

/// Local response normalisation across channels (Krizhevsky et al. 2012, sec. 3.3), with
/// PyTorch's `nn.LocalResponseNorm` formula.
///
/// b_c = a_c / (k + alpha / size · Σ a_j²)^beta, the sum over the channels
/// j in [c − size/2, c + (size − 1)/2] (integer division; zero-padded at the ends).
/// AlexNet used k = 2, n = 5, alpha = 1e-4, beta = 0.75 with alpha not divided by n; PyTorch
/// (and this layer) divide alpha by `size`, so AlexNet's exact layer is
/// `LocalResponseNorm(size: 5, alpha: 5e-4, beta: 0.75, k: 2)`. Input [N, C, *]
/// (at least 3 dims, as PyTorch). No parameters. Cost O(size · count).
public final class LocalResponseNorm: Module {
    public let size: Int
    public let alpha: Double, beta: Double, k: Double

    public init(size: Int = 5, alpha: Double = 1e-4, beta: Double = 0.75, k: Double = 2) {
        precondition(size >= 1, "LocalResponseNorm: size \(size) must be positive")
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k
    }

    public override func forward(_ x: Tensor) -> Tensor {
        precondition(x.rank >= 3, "LocalResponseNorm: expected input [N, C, *] with at least 3 dimensions, got \(shapeString(x.shape))")
        let c = x.shape[1]
        let padded = (x * x).padded(dim: 1, before: size / 2, after: (size - 1) / 2)
        var windowSum = padded.narrowed(dim: 1, start: 0, length: c)
        for j in 1..<Swift.max(size, 1) {
            windowSum = windowSum + padded.narrowed(dim: 1, start: j, length: c)
        }
        let div = (windowSum * (alpha / Double(size)) + k).pow(beta)
        return x / div
    }
}
