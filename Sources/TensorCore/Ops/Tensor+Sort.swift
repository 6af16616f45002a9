import TensorKernels

/// Selection along one dimension: max/min with indices, argmax/argmin, sort and top-k.
///
/// Index outputs are Int64 positions along the dim. NaN ranks above every number (as in
/// PyTorch): max returns NaN when a line holds one, ascending sort puts NaN last.
/// Integer tensors are accepted and computed through Float64 (exact below 2^53).
extension Tensor {
    /// Adds `source` (dense, shape `index.shape`) into zeros of `shape` at the positions
    /// `index` names along `dim`: the gradient of every op here. No autograd.
    static func scatterAddAlongDim(_ source: Tensor, index: Tensor, dim: Int, shape: [Int]) -> Tensor {
        precondition(index.dtype == .int64, "scatterAddAlongDim: index must be int64, got \(index.dtype)")
        precondition(source.shape == index.shape, "scatterAddAlongDim: source \(shapeString(source.shape)) and index \(shapeString(index.shape)) differ")
        let src = source.computeCopy().contiguousCopy()
        let ix = index.isContiguous && index.offset == 0 ? index : index.contiguousCopy()
        let out = Tensor.full(shape, 0, dtype: src.dtype)
        func run<T: KernelFloat>(_: T.Type) {
            src.withStoragePointer(T.self) { s in
                ix.withStoragePointer(Int64.self) { i in
                    TensorKernels.scatterAddAlongDim(s, index: i, srcShape: src.shape, dim: dim,
                                                     out.storage.pointer.assumingMemoryBound(to: T.self), dstShape: shape)
                }
            }
        }
        if src.dtype == .float32 { run(Float.self) } else { run(Double.self) }
        return out.to(source.dtype).detached()
    }

    /// Values and indices of the extreme element along a normalised dim (no autograd), dim removed.
    func extremeAlongRaw(dim d: Int, findMax: Bool, op: String) -> (values: Tensor, indices: Tensor) {
        precondition(shape[d] > 0, "\(op): cannot reduce over the empty dimension \(d) of shape \(shapeString(shape))")
        let x = computeCopy()
        var outShape = shape
        outShape.remove(at: d)
        let values = Tensor(uninitializedShape: outShape, dtype: x.dtype)
        let indices = Tensor(uninitializedShape: outShape, dtype: .int64)
        func run<T: KernelFloat>(_: T.Type) {
            x.withStoragePointer(T.self) { p in
                argExtremeAlongDim(p, shape: x.shape, strides: x.strides, offset: x.offset, dim: d,
                                   values: values.storage.pointer.assumingMemoryBound(to: T.self),
                                   indices: indices.storage.pointer.assumingMemoryBound(to: Int64.self), findMax: findMax)
            }
        }
        if x.dtype == .float32 { run(Float.self) } else { run(Double.self) }
        return (values.to(dtype).detached(), indices)
    }

    /// Shared body of `max(dim:)` and `min(dim:)`.
    func extremeAlong(dim: Int, keepDim: Bool, findMax: Bool) -> (values: Tensor, indices: Tensor) {
        let op = findMax ? "max" : "min"
        if rank == 0 {
            let r = reshaped([1]).extremeAlong(dim: normalizedDim(dim, op: op), keepDim: false, findMax: findMax)
            return (r.values, r.indices)
        }
        let d = normalizedDim(dim, op: op)
        var (values, indices) = extremeAlongRaw(dim: d, findMax: findMax, op: op)
        var keep = shape
        keep[d] = 1
        let indicesKeep = indices.reshaped(keep).detached()
        if keepDim {
            values = values.reshaped(keep).detached()
            indices = indicesKeep
        }
        let src = shape
        let out = values.recording(findMax ? "maxAlong" : "minAlong", inputs: [self]) { g in
            [Tensor.scatterAddAlongDim(g.reshaped(keep), index: indicesKeep, dim: d, shape: src)]
        }
        return (out, indices)
    }

    /// Maximum along `dim` and its Int64 index, like `torch.max(x, dim)`.
    ///
    /// NaN wins; ties return the first index. The gradient flows to that index only.
    /// Reducing an empty dimension is a precondition failure.
    public func max(dim: Int, keepDim: Bool = false) -> (values: Tensor, indices: Tensor) {
        extremeAlong(dim: dim, keepDim: keepDim, findMax: true)
    }

    /// Minimum along `dim` and its Int64 index, like `torch.min(x, dim)`.
    public func min(dim: Int, keepDim: Bool = false) -> (values: Tensor, indices: Tensor) {
        extremeAlong(dim: dim, keepDim: keepDim, findMax: false)
    }

    /// Int64 index of the maximum along `dim` (first on ties, NaN wins). Not differentiable.
    public func argmax(dim: Int, keepDim: Bool = false) -> Tensor {
        max(dim: dim, keepDim: keepDim).indices
    }

    /// Int64 index of the minimum along `dim` (first on ties, NaN wins). Not differentiable.
    public func argmin(dim: Int, keepDim: Bool = false) -> Tensor {
        min(dim: dim, keepDim: keepDim).indices
    }

    /// Sorts along `dim` (stable), returning the values and their original Int64 positions.
    ///
    /// Ascending puts NaN last; descending puts NaN first (as `torch.sort`). Equal values
    /// keep their order. The gradient scatters back to the original positions.
    /// Complexity: O(n log n) per line.
    public func sorted(dim: Int = -1, descending: Bool = false) -> (values: Tensor, indices: Tensor) {
        if rank == 0 {
            let r = reshaped([1]).sorted(dim: normalizedDim(dim, op: "sort"), descending: descending)
            return (r.values.reshaped([]), r.indices.reshaped([]))
        }
        let d = normalizedDim(dim, op: "sort")
        let x = computeCopy()
        let values = Tensor(uninitializedShape: shape, dtype: x.dtype)
        let indices = Tensor(uninitializedShape: shape, dtype: .int64)
        func run<T: KernelFloat>(_: T.Type) {
            x.withStoragePointer(T.self) { p in
                sortAlongDim(p, shape: x.shape, strides: x.strides, offset: x.offset, dim: d, descending: descending,
                             values: values.storage.pointer.assumingMemoryBound(to: T.self),
                             indices: indices.storage.pointer.assumingMemoryBound(to: Int64.self))
            }
        }
        if x.dtype == .float32 { run(Float.self) } else { run(Double.self) }
        let src = shape
        let out = values.to(dtype).detached().recording("sort", inputs: [self]) { g in
            [Tensor.scatterAddAlongDim(g, index: indices, dim: d, shape: src)]
        }
        return (out, indices)
    }

    /// The `k` largest (or smallest) elements along `dim` and their Int64 positions.
    ///
    /// NaN counts as the largest value; ties prefer the lower index. With `sorted` the
    /// results are ordered (descending for `largest`); otherwise they keep their original
    /// order along `dim`. Precondition: 0 ≤ k ≤ size of `dim`. Complexity: O(n log k) per line.
    public func topk(_ k: Int, dim: Int = -1, largest: Bool = true, sorted: Bool = true) -> (values: Tensor, indices: Tensor) {
        if rank == 0 {
            let r = reshaped([1]).topk(k, dim: normalizedDim(dim, op: "topk"), largest: largest, sorted: sorted)
            return (r.values.reshaped([]), r.indices.reshaped([]))
        }
        let d = normalizedDim(dim, op: "topk")
        precondition(k >= 0 && k <= shape[d],
                     "topk: k = \(k) out of range for dimension \(d) of size \(shape[d]) (shape \(shapeString(shape)))")
        let x = computeCopy()
        var outShape = shape
        outShape[d] = k
        let values = Tensor(uninitializedShape: outShape, dtype: x.dtype)
        let indices = Tensor(uninitializedShape: outShape, dtype: .int64)
        func run<T: KernelFloat>(_: T.Type) {
            x.withStoragePointer(T.self) { p in
                topkAlongDim(p, shape: x.shape, strides: x.strides, offset: x.offset, dim: d, k: k, largest: largest, sorted: sorted,
                             values: values.storage.pointer.assumingMemoryBound(to: T.self),
                             indices: indices.storage.pointer.assumingMemoryBound(to: Int64.self))
            }
        }
        if x.dtype == .float32 { run(Float.self) } else { run(Double.self) }
        let src = shape
        let out = values.to(dtype).detached().recording("topk", inputs: [self]) { g in
            [Tensor.scatterAddAlongDim(g, index: indices, dim: d, shape: src)]
        }
        return (out, indices)
    }
}

// MARK: - Keeping Swift's min/max reachable inside Tensor

/// `max(dim:)` and `min(dim:)` are members of `Tensor`, so inside any `Tensor`
/// extension an unqualified `max(a, b)` would find the member and fail to compile
/// ("use of 'max' refers to instance method"). These internal forwarders (instance and
/// static, for instance and static contexts) make such calls resolve to Swift's
/// functions again, so code in every Tensor extension can keep writing `max(a, b)`.
extension Tensor {
    @inlinable @inline(__always) static func max<C: Comparable>(_ a: C, _ b: C) -> C { Swift.max(a, b) }
    @inlinable @inline(__always) func max<C: Comparable>(_ a: C, _ b: C) -> C { Swift.max(a, b) }
    @inlinable @inline(__always) static func min<C: Comparable>(_ a: C, _ b: C) -> C { Swift.min(a, b) }
    @inlinable @inline(__always) func min<C: Comparable>(_ a: C, _ b: C) -> C { Swift.min(a, b) }
}
