import TensorKernels

extension ShapeRules {
    /// The shape of concatenating `shapes` along `dim` (negative counts from the end).
    ///
    /// All shapes need the same rank (at least 1) and equal extents outside `dim`;
    /// extents along `dim` add up (0 is allowed). Throws naming the offending tensor's
    /// position and both shapes.
    public static func cat(_ shapes: [[Int]], dim: Int) throws(TensorError) -> [Int] {
        guard let first = shapes.first else { throw .argument("cat", "expected at least one tensor, got none") }
        guard !first.isEmpty else { throw .shape("cat", "tensor 0 is 0-d (shape []); 0-d tensors cannot be concatenated") }
        let r = first.count
        let d = dim < 0 ? dim + r : dim
        guard d >= 0 && d < r else {
            throw .shape("cat", "dimension \(dim) out of range for tensors of rank \(r) (tensor 0 has shape \(shapeString(first)))")
        }
        var out = first
        for (i, s) in shapes.enumerated().dropFirst() {
            guard s.count == r else {
                throw .shape("cat", "tensor \(i) has shape \(shapeString(s)) of rank \(s.count), but tensor 0 has shape \(shapeString(first)) of rank \(r)")
            }
            for k in 0..<r where k != d && s[k] != first[k] {
                throw .shape("cat", "tensor \(i) has shape \(shapeString(s)), but tensor 0 has shape \(shapeString(first)): sizes must match except in dimension \(d) (dimension \(k) is \(s[k]) vs \(first[k]))")
            }
            out[d] += s[d]
        }
        return out
    }
}

/// Joins and splits: concatenate, stack, split and chunk along a dimension.
extension Tensor {
    /// Concatenates `tensors` along `dim`, like `torch.cat`.
    ///
    /// All tensors share a dtype, a rank (at least 1) and extents outside `dim`; tensors
    /// with extent 0 along `dim` are allowed. The result is a new dense tensor.
    /// Differentiable: each input receives its slice of the output gradient.
    public static func cat(_ tensors: [Tensor], dim: Int = 0) -> Tensor {
        let outShape = checked { () throws(TensorError) in try ShapeRules.cat(tensors.map(\.shape), dim: dim) }
        let dt = tensors[0].dtype
        for (i, t) in tensors.enumerated() where t.dtype != dt {
            preconditionFailure("cat: tensor \(i) has dtype \(t.dtype) (shape \(shapeString(t.shape))), but tensor 0 has dtype \(dt) (shape \(shapeString(tensors[0].shape)))")
        }
        let d = dim < 0 ? dim + outShape.count : dim
        var out = Tensor(uninitializedShape: outShape, dtype: dt)
        let outStrides = out.strides
        var starts: [Int] = []
        var start = 0
        for t in tensors {
            starts.append(start)
            if t.count > 0 {
                out.copyInto(shape: t.shape, strides: outStrides, offset: start * outStrides[d], from: t)
            }
            start += t.shape[d]
        }
        let lengths = tensors.map { $0.shape[d] }
        return out.recording("cat", inputs: tensors) { g in
            (0..<lengths.count).map { i in g.narrowed(dim: d, start: starts[i], length: lengths[i]) }
        }
    }

    /// Stacks equally shaped `tensors` along a new dimension `dim` (0...rank), like `torch.stack`.
    ///
    /// The result has shape `shape[..<dim] + [tensors.count] + shape[dim...]`.
    /// Differentiable: each input receives its slice of the output gradient.
    public static func stack(_ tensors: [Tensor], dim: Int = 0) -> Tensor {
        precondition(!tensors.isEmpty, "stack: expected at least one tensor, got none")
        let first = tensors[0]
        for (i, t) in tensors.enumerated().dropFirst() {
            precondition(t.shape == first.shape,
                         "stack: tensor \(i) has shape \(shapeString(t.shape)), but tensor 0 has shape \(shapeString(first.shape)); all shapes must be equal")
            precondition(t.dtype == first.dtype,
                         "stack: tensor \(i) has dtype \(t.dtype), but tensor 0 has dtype \(first.dtype)")
        }
        let r = first.rank
        let d = dim < 0 ? dim + r + 1 : dim
        precondition(d >= 0 && d <= r, "stack: dimension \(dim) out of range for stacking tensors of rank \(r) (shape \(shapeString(first.shape)))")
        var outShape = first.shape
        outShape.insert(tensors.count, at: d)
        var out = Tensor(uninitializedShape: outShape, dtype: first.dtype)
        var regionStrides = out.strides
        let step = regionStrides.remove(at: d)
        if first.count > 0 {
            for (i, t) in tensors.enumerated() {
                out.copyInto(shape: t.shape, strides: regionStrides, offset: i * step, from: t)
            }
        }
        let n = tensors.count
        return out.recording("stack", inputs: tensors) { g in
            (0..<n).map { i in
                let slice = g.narrowed(dim: d, start: i, length: 1)
                var s = slice.shape
                s.remove(at: d)
                var st = slice.strides
                st.remove(at: d)
                return slice.view(shape: s, strides: st, offset: slice.offset)
            }
        }
    }

    /// Splits along `dim` into pieces of the given `sizes` (which must sum to `shape[dim]`).
    ///
    /// The pieces are views sharing this tensor's storage (differentiable, as `narrowed`).
    public func split(_ sizes: [Int], dim: Int = 0) -> [Tensor] {
        let d = normalizedDim(dim, op: "split")
        precondition(rank >= 1, "split: cannot split a 0-d tensor")
        for s in sizes { precondition(s >= 0, "split: negative size \(s) in \(sizes)") }
        let total = sizes.reduce(0, +)
        precondition(total == shape[d],
                     "split: sizes \(sizes) sum to \(total), but dimension \(d) has size \(shape[d]) (shape \(shapeString(shape)))")
        var start = 0
        var out: [Tensor] = []
        out.reserveCapacity(sizes.count)
        for s in sizes {
            out.append(narrowed(dim: d, start: start, length: s))
            start += s
        }
        return out
    }

    /// Splits along `dim` into pieces of `size` elements; the last piece holds the
    /// remainder. A dimension of extent 0 gives one empty piece. Views, like `torch.split`.
    public func split(size: Int, dim: Int = 0) -> [Tensor] {
        precondition(size > 0, "split: size \(size) must be positive")
        precondition(rank >= 1, "split: cannot split a 0-d tensor")
        let d = normalizedDim(dim, op: "split")
        let n = shape[d]
        if n == 0 { return [narrowed(dim: d, start: 0, length: 0)] }
        var sizes = [Int](repeating: size, count: n / size)
        if n % size != 0 { sizes.append(n % size) }
        return split(sizes, dim: d)
    }

    /// Splits along `dim` into at most `chunks` pieces of `ceil(shape[dim] / chunks)`
    /// elements (the last may be smaller, and fewer pieces may result), like `torch.chunk`.
    /// A dimension of extent 0 gives `chunks` empty pieces.
    public func chunk(_ chunks: Int, dim: Int = 0) -> [Tensor] {
        precondition(chunks > 0, "chunk: number of chunks \(chunks) must be positive")
        precondition(rank >= 1, "chunk: cannot chunk a 0-d tensor")
        let d = normalizedDim(dim, op: "chunk")
        let n = shape[d]
        if n == 0 { return split([Int](repeating: 0, count: chunks), dim: d) }
        return split(size: (n + chunks - 1) / chunks, dim: d)
    }
}
