import TensorKernels

/// Indexing ops: gather, scatter-add, index-select, embedding lookup, one-hot and dropout masks.
///
/// Index tensors are Int64 or Int32. Index values must lie in `0..<size` of the indexed
/// dimension (no negative indices); a bad value traps with a message naming the op,
/// the value and the bound.
extension Tensor {
    /// Traps unless `index` has an integer index dtype.
    static func checkIndexDType(_ index: Tensor, op: String) {
        precondition(index.dtype == .int64 || index.dtype == .int32,
                     "\(op): index must be int64 or int32, got \(index.dtype) (shape \(shapeString(index.shape)))")
    }

    /// Calls `body` with the Swift type of an Int64 / Int32 index tensor.
    static func withIndexType(_ index: Tensor, _ body: (any (TensorElement & BinaryInteger).Type) -> Void) {
        switch index.dtype {
        case .int64: body(Int64.self)
        case .int32: body(Int32.self)
        default: preconditionFailure("index: expected int64 or int32, got \(index.dtype)")
        }
    }

    /// Traps naming the op, the first bad value and the bound when an index is outside `0..<bound`.
    static func checkIndexRange(_ index: Tensor, bound: Int, op: String, what: String) {
        var bad: Int? = nil
        withIndexType(index) { (it: any (TensorElement & BinaryInteger).Type) in
            func scan<I: TensorElement & BinaryInteger>(_: I.Type) {
                bad = index.withStoragePointer(I.self) { p in
                    firstIndexOutOfRange(p, shape: index.shape, strides: index.strides, offset: index.offset, bound: bound)
                }
            }
            scan(it)
        }
        if let bad { preconditionFailure("\(op): index \(bad) out of range for \(what) (valid: 0..<\(bound))") }
    }

    /// Gather without autograd or validation (shapes and index values already checked).
    static func gatherRaw(_ src: Tensor, dim: Int, index: Tensor) -> Tensor {
        let out = Tensor(uninitializedShape: index.shape, dtype: src.dtype)
        if out.count == 0 { return out }
        dispatchAnyType(src.dtype) { (t: any TensorElement.Type) in
            withIndexType(index) { (it: any (TensorElement & BinaryInteger).Type) in
                func run<T: TensorElement, I: TensorElement & BinaryInteger>(_: T.Type, _: I.Type) {
                    src.withStoragePointer(T.self) { s in
                        index.withStoragePointer(I.self) { ix in
                            gatherStrided(s, srcStrides: src.strides, srcOffset: src.offset,
                                          ix, indexStrides: index.strides, indexOffset: index.offset,
                                          shape: index.shape, dim: dim, out.storage.pointer.assumingMemoryBound(to: T.self))
                        }
                    }
                }
                run(t, it)
            }
        }
        return out
    }

    /// `base` with `source` scatter-added at `index` along `dim`: a fresh dense tensor, no autograd,
    /// no validation. Reduced-precision types accumulate in Float32.
    static func scatterAddRaw(_ base: Tensor, dim: Int, index: Tensor, source: Tensor) -> Tensor {
        if base.dtype.isReducedPrecision {
            return scatterAddRaw(base.to(.float32).detached(), dim: dim, index: index,
                                 source: source.to(.float32).detached()).to(base.dtype).detached()
        }
        var out = base.contiguousCopy()
        if index.count == 0 { return out }
        let dstStrides = out.strides
        func run<T: TensorElement & AdditiveArithmetic>(_: T.Type) {
            let d = out.storage.pointer.assumingMemoryBound(to: T.self)
            source.withStoragePointer(T.self) { s in
                withIndexType(index) { (it: any (TensorElement & BinaryInteger).Type) in
                    func inner<I: TensorElement & BinaryInteger>(_: I.Type) {
                        index.withStoragePointer(I.self) { ix in
                            scatterAddStrided(d, dstStrides: dstStrides, dstOffset: 0,
                                              s, sourceStrides: source.strides, sourceOffset: source.offset,
                                              ix, indexStrides: index.strides, indexOffset: index.offset,
                                              shape: index.shape, dim: dim)
                        }
                    }
                    inner(it)
                }
            }
        }
        switch base.dtype {
        case .float32: run(Float.self)
        case .float64: run(Double.self)
        case .int32: run(Int32.self)
        case .int64: run(Int64.self)
        default: preconditionFailure("scatterAdd: unsupported dtype \(base.dtype)")
        }
        out.gradNode = nil
        return out
    }

    /// Gathers values along `dim` at `index`, like `torch.gather`.
    ///
    /// `out[i][j][k] = self[index[i][j][k]][j][k]` for `dim == 0` (and likewise for other
    /// dims). `index` (Int64 or Int32) has the same rank as `self`, extents no larger than
    /// `self`'s outside `dim`, and values in `0..<shape[dim]`; the result has `index`'s
    /// shape. Differentiable in `self` (the gradient scatter-adds, so repeated indices
    /// accumulate). Complexity: O(index.count).
    public func gather(dim: Int, index: Tensor) -> Tensor {
        Tensor.checkIndexDType(index, op: "gather")
        if rank == 0 {
            precondition(index.rank == 0, "gather: index of shape \(shapeString(index.shape)) for a 0-d input must be 0-d")
            return reshaped([1]).gather(dim: 0, index: index.reshaped([1])).reshaped([])
        }
        let d = normalizedDim(dim, op: "gather")
        precondition(index.rank == rank,
                     "gather: index of shape \(shapeString(index.shape)) must have the same rank as the input \(shapeString(shape))")
        for k in 0..<rank where k != d {
            precondition(index.shape[k] <= shape[k],
                         "gather: index shape \(shapeString(index.shape)) exceeds input shape \(shapeString(shape)) in dimension \(k)")
        }
        Tensor.checkIndexRange(index, bound: shape[d], op: "gather",
                               what: "dimension \(d) of size \(shape[d]) (input shape \(shapeString(shape)))")
        let out = Tensor.gatherRaw(self, dim: d, index: index)
        let (src, dt, idx) = (shape, dtype, index.detached())
        return out.recording("gather", inputs: [self]) { g in
            [Tensor.scatterAddRaw(Tensor.zeros(src, dtype: dt), dim: d, index: idx, source: g)]
        }
    }

    /// Returns `self` with `source` added at `index` along `dim`, like `torch.scatter_add`.
    ///
    /// For `dim == 0`: `out[index[i][j]][j] += source[i][j]` for every position of `index`;
    /// repeated indices accumulate. `index`, `source` and `self` have the same rank;
    /// `index` is no larger than `source` in any dimension and no larger than `self`
    /// outside `dim`. Differentiable in `self` (identity) and `source` (a gather).
    /// Complexity: O(self.count + index.count).
    public func scatterAdd(dim: Int, index: Tensor, source: Tensor) -> Tensor {
        Tensor.checkIndexDType(index, op: "scatterAdd")
        precondition(source.dtype == dtype, "scatterAdd: source dtype \(source.dtype) differs from input dtype \(dtype)")
        precondition(dtype != .bool && dtype != .uint8, "scatterAdd: unsupported dtype \(dtype)")
        if rank == 0 {
            precondition(index.rank == 0 && source.rank == 0,
                         "scatterAdd: index \(shapeString(index.shape)) and source \(shapeString(source.shape)) for a 0-d input must be 0-d")
            return reshaped([1]).scatterAdd(dim: 0, index: index.reshaped([1]), source: source.reshaped([1])).reshaped([])
        }
        let d = normalizedDim(dim, op: "scatterAdd")
        precondition(index.rank == rank && source.rank == rank,
                     "scatterAdd: input \(shapeString(shape)), index \(shapeString(index.shape)) and source \(shapeString(source.shape)) must have the same rank")
        for k in 0..<rank {
            precondition(index.shape[k] <= source.shape[k],
                         "scatterAdd: index shape \(shapeString(index.shape)) exceeds source shape \(shapeString(source.shape)) in dimension \(k)")
            precondition(k == d || index.shape[k] <= shape[k],
                         "scatterAdd: index shape \(shapeString(index.shape)) exceeds input shape \(shapeString(shape)) in dimension \(k)")
        }
        Tensor.checkIndexRange(index, bound: shape[d], op: "scatterAdd",
                               what: "dimension \(d) of size \(shape[d]) (input shape \(shapeString(shape)))")
        let out = Tensor.scatterAddRaw(self, dim: d, index: index, source: source)
        let (idx, srcShape, idxShape, needSource) = (index.detached(), source.shape, index.shape, source.requiresGrad)
        return out.recording("scatterAdd", inputs: [self, source]) { g in
            var gs: Tensor? = nil
            if needSource {
                let picked = Tensor.gatherRaw(g, dim: d, index: idx)
                if idxShape == srcShape {
                    gs = picked
                } else {
                    var z = Tensor.zeros(srcShape, dtype: g.dtype)
                    let zs = z.strides
                    z.copyInto(shape: idxShape, strides: zs, offset: 0, from: picked)
                    gs = z
                }
            }
            return [g, gs]
        }
    }

    /// `index` (0-d or 1-D) viewed as an index over `outShape` that varies only along `dim`.
    static func broadcastIndex(_ index: Tensor, dim: Int, outShape: [Int]) -> Tensor {
        let flat = index.rank == 0 ? index.reshaped([1]) : index
        var viewShape = [Int](repeating: 1, count: outShape.count)
        viewShape[dim] = flat.shape[0]
        var strides = [Int](repeating: 0, count: outShape.count)
        strides[dim] = flat.strides[0]
        return Tensor(storage: flat.storage, shape: outShape, strides: strides, offset: flat.offset, dtype: flat.dtype)
    }

    /// Selects the entries `index` (1-D, Int64 or Int32) along `dim`, like `torch.index_select`.
    ///
    /// The result has `self`'s shape with `shape[dim]` replaced by `index.count`; entries
    /// may repeat. Differentiable in `self` (repeated indices accumulate gradient).
    /// Complexity: O(result count).
    public func indexSelect(dim: Int, index: Tensor) -> Tensor {
        Tensor.checkIndexDType(index, op: "indexSelect")
        precondition(index.rank <= 1, "indexSelect: index must be 1-D, got shape \(shapeString(index.shape))")
        precondition(rank >= 1, "indexSelect: input must have at least one dimension, got a 0-d tensor")
        let d = normalizedDim(dim, op: "indexSelect")
        Tensor.checkIndexRange(index, bound: shape[d], op: "indexSelect",
                               what: "dimension \(d) of size \(shape[d]) (input shape \(shapeString(shape)))")
        var outShape = shape
        outShape[d] = index.count
        let bIndex = Tensor.broadcastIndex(index, dim: d, outShape: outShape)
        let out = Tensor.gatherRaw(self, dim: d, index: bIndex)
        let (src, dt) = (shape, dtype)
        return out.recording("indexSelect", inputs: [self]) { g in
            [Tensor.scatterAddRaw(Tensor.zeros(src, dtype: dt), dim: d, index: bIndex, source: g)]
        }
    }

    /// Looks up rows of `weight` ([V, D]) for integer `indices` of any shape: the result has
    /// shape `indices.shape + [D]`, like `torch.nn.functional.embedding`.
    ///
    /// Differentiable in `weight`; the gradient of a row used several times is the sum of
    /// the output gradients at its uses. Complexity: O(indices.count · D).
    public static func embedding(_ indices: Tensor, weight: Tensor) -> Tensor {
        checkIndexDType(indices, op: "embedding")
        precondition(weight.rank == 2, "embedding: weight must be 2-D [numEmbeddings, dim], got \(shapeString(weight.shape))")
        let (v, dimD) = (weight.shape[0], weight.shape[1])
        checkIndexRange(indices, bound: v, op: "embedding", what: "an embedding table of \(v) rows (weight shape \(shapeString(weight.shape)))")
        let flat = indices.reshaped([indices.count])
        let rowsShape = [flat.count, dimD]
        let bIndex = broadcastIndex(flat, dim: 0, outShape: rowsShape)
        let rows = gatherRaw(weight, dim: 0, index: bIndex)
        let outShape = indices.shape + [dimD]
        let out = rows.view(shape: outShape, strides: contiguousStrides(outShape), offset: 0)
        let (wShape, dt) = (weight.shape, weight.dtype)
        return out.recording("embedding", inputs: [weight]) { g in
            [scatterAddRaw(Tensor.zeros(wShape, dtype: dt), dim: 0, index: bIndex, source: g.reshaped(rowsShape))]
        }
    }

    /// One-hot encoding of an integer (Int64 or Int32) tensor: Float32 of shape
    /// `shape + [numClasses]` with a 1 at each label's class and 0 elsewhere.
    ///
    /// Traps naming the label and the class count when a label is outside `0..<numClasses`.
    public func oneHot(numClasses: Int) -> Tensor {
        precondition(dtype == .int64 || dtype == .int32, "oneHot: labels must be int64 or int32, got \(dtype)")
        precondition(numClasses > 0, "oneHot: numClasses must be positive, got \(numClasses)")
        var bad: Int? = nil
        let out = Tensor.zeros(shape + [numClasses], dtype: .float32)
        let labels = self
        Tensor.withIndexType(labels) { (it: any (TensorElement & BinaryInteger).Type) in
            func run<I: TensorElement & BinaryInteger>(_: I.Type) {
                labels.withStoragePointer(I.self) { p in
                    bad = firstIndexOutOfRange(p, shape: labels.shape, strides: labels.strides, offset: labels.offset, bound: numClasses)
                    if bad == nil {
                        oneHotFill(p, shape: labels.shape, strides: labels.strides, offset: labels.offset,
                                   numClasses: numClasses, one: Float(1), out.storage.pointer.assumingMemoryBound(to: Float.self))
                    }
                }
            }
            run(it)
        }
        if let bad { preconditionFailure("oneHot: label \(bad) out of range for \(numClasses) classes (valid: 0..<\(numClasses))") }
        return out
    }

    /// An inverted-dropout mask: each element is 0 with probability `p` and `1 / (1 - p)`
    /// otherwise, so `x * mask` keeps the expectation of `x`.
    ///
    /// `p` must be in [0, 1); `p == 0` gives ones (and draws nothing from `generator`).
    /// Draws `elementCount(shape)` uniforms from `generator`, so saving its state replays the mask.
    public static func dropoutMask(_ shape: [Int], p: Double, dtype: DType = .float32, generator: Generator = .default) -> Tensor {
        precondition(p >= 0 && p < 1, "dropoutMask: p \(p) must be in [0, 1)")
        precondition(dtype.isFloatingPoint, "dropoutMask: dtype \(dtype) is not floating point")
        for s in shape { precondition(s >= 0, "dropoutMask: negative dimension in shape \(shapeString(shape))") }
        if p == 0 { return ones(shape, dtype: dtype) }
        var u = [Double](repeating: 0, count: elementCount(shape))
        u.withUnsafeMutableBufferPointer { generator.fillUniform($0) }
        let keep = 1 / (1 - p)
        for i in 0..<u.count { u[i] = u[i] < p ? 0 : keep }
        return fromDoubles(u, shape: shape, dtype: dtype)
    }
}
