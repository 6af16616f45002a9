import TensorCore

/// A lookup table of `count` vectors of size `dim` (PyTorch's `nn.Embedding`).
///
/// Input: integer indices (Int64 or Int32) of any shape with values in 0..<count; output
/// `indices.shape + [dim]`. weight [count, dim], initialised N(0, 1) as PyTorch. The gradient
/// of a row used several times is the sum of its output gradients. An out-of-range index traps
/// naming the index and the table size.
public final class Embedding: Module {
    public let weight: Parameter
    public let count: Int, dim: Int

    public init(_ count: Int, _ dim: Int, generator: Generator = .default) {
        precondition(count > 0 && dim > 0, "Embedding: count \(count) and dim \(dim) must be positive")
        self.count = count
        self.dim = dim
        weight = Parameter(Tensor.randn([count, dim], generator: generator))
    }

    /// An embedding initialised from `weight` ([count, dim]), like `nn.Embedding.from_pretrained` (trainable).
    public init(weight: Tensor) {
        precondition(weight.rank == 2 && weight.shape[0] > 0 && weight.shape[1] > 0,
                     "Embedding: weight must be [count, dim] with positive extents, got \(shapeString(weight.shape))")
        count = weight.shape[0]
        dim = weight.shape[1]
        self.weight = Parameter(weight)
    }

    public override func forward(_ indices: Tensor) -> Tensor {
        precondition(indices.dtype == .int64 || indices.dtype == .int32,
                     "Embedding(\(count), \(dim)): indices must be int64 or int32, got \(indices.dtype) (shape \(shapeString(indices.shape)))")
        return Tensor.embedding(indices, weight: weight.value)
    }
}
