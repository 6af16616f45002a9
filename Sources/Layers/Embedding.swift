import TensorCore

/// A lookup table of `count` vectors of size `dim` (PyTorch's `nn.Embedding`).
///
/// Input: integer indices (Int64 or Int32) of any shape with values in 0..<count; output
/// `indices.shape + [dim]`. weight [count, dim], initialised N(0, 1) as PyTorch. The gradient
/// of a row used several times is the sum of its output gradients. An out-of-range index traps
/// naming the index and the table size.
///
/// `paddingIndex` (PyTorch's `padding_idx`, negative counts from the end): that row starts as
/// zeros and never receives a gradient, so it stays whatever it is (a padding vector); the
/// lookup itself returns the row's current values, as PyTorch does.
public final class Embedding: Module {
    public let weight: Parameter
    public let count: Int, dim: Int
    /// The row that gets no gradient (normalised to 0..<count), or nil.
    public let paddingIndex: Int?

    public init(_ count: Int, _ dim: Int, paddingIndex: Int? = nil, generator: Generator = .default) {
        precondition(count > 0 && dim > 0, "Embedding: count \(count) and dim \(dim) must be positive")
        self.count = count
        self.dim = dim
        self.paddingIndex = Embedding.normalise(paddingIndex, count: count)
        var w = Tensor.randn([count, dim], generator: generator)
        if let p = self.paddingIndex {
            // Draw every row, then zero the padding row (PyTorch's order, so the stream matches).
            var values = w.scalars(as: Float.self)
            for j in 0..<dim { values[p * dim + j] = 0 }
            w = try! Tensor(values, shape: [count, dim])
        }
        weight = Parameter(w)
    }

    static func normalise(_ index: Int?, count: Int) -> Int? {
        guard let i = index else { return nil }
        let n = i < 0 ? i + count : i
        precondition(n >= 0 && n < count, "Embedding: paddingIndex \(i) out of range for \(count) rows (expected -\(count)..<\(count))")
        return n
    }

    /// An embedding initialised from `weight` ([count, dim]), like `nn.Embedding.from_pretrained` (trainable).
    public init(weight: Tensor, paddingIndex: Int? = nil) {
        precondition(weight.rank == 2 && weight.shape[0] > 0 && weight.shape[1] > 0,
                     "Embedding: weight must be [count, dim] with positive extents, got \(shapeString(weight.shape))")
        count = weight.shape[0]
        dim = weight.shape[1]
        self.paddingIndex = Embedding.normalise(paddingIndex, count: count)
        self.weight = Parameter(weight)
    }

    public override func forward(_ indices: Tensor) -> Tensor {
        precondition(indices.dtype == .int64 || indices.dtype == .int32,
                     "Embedding(\(count), \(dim)): indices must be int64 or int32, got \(indices.dtype) (shape \(shapeString(indices.shape)))")
        let out = Tensor.embedding(indices, weight: weight.value)
        guard let p = paddingIndex, out.gradNode != nil else { return out }
        // No gradient reaches the padding row: zero the output gradient where it was looked up.
        let mask = indices.ne(Double(p)).to(out.dtype).unsqueezed(dim: -1)
        out.registerHook { g in g * mask }
        return out
    }
}
