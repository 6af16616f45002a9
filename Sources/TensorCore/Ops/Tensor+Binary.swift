import TensorKernels

/// Elementwise binary arithmetic on two tensors (NumPy broadcasting, equal dtypes).
public enum BinaryOp: String, Sendable, CaseIterable {
    case add, sub, mul, div, pow, maximum, minimum
}

/// Elementwise comparisons producing Bool tensors.
public enum CompareOp: String, Sendable, CaseIterable {
    case eq, ne, lt, le, gt, ge
}

@inlinable
func binaryFloatKernel<T: KernelFloat>(_ op: BinaryOp, _ a: Tensor, _ aStrides: [Int], _ b: Tensor, _ bStrides: [Int],
                                        _ shape: [Int], _ dst: UnsafeMutablePointer<T>) {
    a.withStoragePointer(T.self) { pa in
        b.withStoragePointer(T.self) { pb in
            // Each case calls the kernel with a literal closure inside the slice body, so the
            // op inlines into every thread's loop (see forEachParallelSlice).
            forEachParallelSlice(shape: shape, strides: [aStrides, bStrides, contiguousStrides(shape)], offsets: [a.offset, b.offset, 0],
                                 minElements: op == .pow ? KernelThreading.minChunk / 8 : KernelThreading.minChunk) { s, st, o in
                let d = dst + o[2]
                switch op {
                case .add: zipStrided(pa, aStrides: st[0], aOffset: o[0], pb, bStrides: st[1], bOffset: o[1], shape: s, d) { $0 + $1 }
                case .sub: zipStrided(pa, aStrides: st[0], aOffset: o[0], pb, bStrides: st[1], bOffset: o[1], shape: s, d) { $0 - $1 }
                case .mul: zipStrided(pa, aStrides: st[0], aOffset: o[0], pb, bStrides: st[1], bOffset: o[1], shape: s, d) { $0 * $1 }
                case .div: zipStrided(pa, aStrides: st[0], aOffset: o[0], pb, bStrides: st[1], bOffset: o[1], shape: s, d) { $0 / $1 }
                case .pow: zipStrided(pa, aStrides: st[0], aOffset: o[0], pb, bStrides: st[1], bOffset: o[1], shape: s, d) { T.pow($0, $1) }
                // NaN propagates (IEEE-style, as torch.maximum does).
                case .maximum: zipStrided(pa, aStrides: st[0], aOffset: o[0], pb, bStrides: st[1], bOffset: o[1], shape: s, d) { x, y in
                    x.isNaN || y.isNaN ? T.nan : (x > y ? x : y) }
                case .minimum: zipStrided(pa, aStrides: st[0], aOffset: o[0], pb, bStrides: st[1], bOffset: o[1], shape: s, d) { x, y in
                    x.isNaN || y.isNaN ? T.nan : (x < y ? x : y) }
                }
            }
        }
    }
}

@inlinable
func binaryIntKernel<T: TensorElement & FixedWidthInteger>(_ op: BinaryOp, _ a: Tensor, _ aStrides: [Int], _ b: Tensor, _ bStrides: [Int],
                                                           _ shape: [Int], _ dst: UnsafeMutablePointer<T>) {
    a.withStoragePointer(T.self) { pa in
        b.withStoragePointer(T.self) { pb in
            let ao = a.offset, bo = b.offset
            switch op {
            case .add: zipStrided(pa, aStrides: aStrides, aOffset: ao, pb, bStrides: bStrides, bOffset: bo, shape: shape, dst) { $0 &+ $1 }
            case .sub: zipStrided(pa, aStrides: aStrides, aOffset: ao, pb, bStrides: bStrides, bOffset: bo, shape: shape, dst) { $0 &- $1 }
            case .mul: zipStrided(pa, aStrides: aStrides, aOffset: ao, pb, bStrides: bStrides, bOffset: bo, shape: shape, dst) { $0 &* $1 }
            case .maximum: zipStrided(pa, aStrides: aStrides, aOffset: ao, pb, bStrides: bStrides, bOffset: bo, shape: shape, dst) { Swift.max($0, $1) }
            case .minimum: zipStrided(pa, aStrides: aStrides, aOffset: ao, pb, bStrides: bStrides, bOffset: bo, shape: shape, dst) { Swift.min($0, $1) }
            case .div, .pow: preconditionFailure("\(op.rawValue): integer tensors are not supported; convert with .to(.float32)")
            }
        }
    }
}

extension Tensor {
    /// Computes `op(a, b)` with broadcasting and no autograd.
    static func binaryRaw(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.dtype == b.dtype, "\(op.rawValue): dtype mismatch \(a.dtype) vs \(b.dtype) (shapes \(shapeString(a.shape)) and \(shapeString(b.shape)))")
        let shape = checked { () throws(TensorError) in try ShapeRules.broadcast(a.shape, b.shape, op: op.rawValue) }
        if a.dtype.isReducedPrecision {
            return binaryRaw(op, a.to(.float32).detached(), b.to(.float32).detached()).to(a.dtype).detached()
        }
        let out = Tensor(uninitializedShape: shape, dtype: a.dtype)
        let aS = a.broadcastStrides(to: shape), bS = b.broadcastStrides(to: shape)
        let p = out.storage.pointer
        switch a.dtype {
        case .float32: binaryFloatKernel(op, a, aS, b, bS, shape, p.assumingMemoryBound(to: Float.self))
        case .float64: binaryFloatKernel(op, a, aS, b, bS, shape, p.assumingMemoryBound(to: Double.self))
        case .int32: binaryIntKernel(op, a, aS, b, bS, shape, p.assumingMemoryBound(to: Int32.self))
        case .int64: binaryIntKernel(op, a, aS, b, bS, shape, p.assumingMemoryBound(to: Int64.self))
        case .uint8: binaryIntKernel(op, a, aS, b, bS, shape, p.assumingMemoryBound(to: UInt8.self))
        default: preconditionFailure("\(op.rawValue): unsupported dtype \(a.dtype)")
        }
        return out
    }

    /// `op(a, b)` with broadcasting, recorded for autograd.
    public static func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) -> Tensor {
        let out = binaryRaw(op, a, b)
        let (ash, bsh) = (a.shape, b.shape)
        switch op {
        case .add:
            return out.recording("add", inputs: [a, b]) { g in [g.sumTo(ash), g.sumTo(bsh)] }
        case .sub:
            return out.recording("sub", inputs: [a, b]) { g in [g.sumTo(ash), (-g).sumTo(bsh)] }
        case .mul:
            let (ad, bd) = (a.detached(), b.detached())
            let (needA, needB) = (a.requiresGrad, b.requiresGrad)
            return out.recording("mul", inputs: [a, b]) { g in
                [needA ? (g * bd).sumTo(ash) : nil, needB ? (g * ad).sumTo(bsh) : nil]
            }
        case .div:
            let (ad, bd) = (a.detached(), b.detached())
            let (needA, needB) = (a.requiresGrad, b.requiresGrad)
            return out.recording("div", inputs: [a, b]) { g in
                [needA ? (g / bd).sumTo(ash) : nil,
                 needB ? (-(g * ad) / (bd * bd)).sumTo(bsh) : nil]
            }
        case .pow:
            let (ad, bd, od) = (a.detached(), b.detached(), out.detached())
            let (needA, needB) = (a.requiresGrad, b.requiresGrad)
            return out.recording("pow", inputs: [a, b]) { g in
                // d/da a^b = b a^(b-1); d/db a^b = a^b log a (0 where a == 0 and the term is 0·log 0).
                let da = needA ? (g * bd * Tensor.binaryRaw(.pow, ad, bd - 1)).sumTo(ash) : nil
                var db: Tensor? = nil
                if needB {
                    let logA = Tensor.where(ad.eq(0), ad.zerosLike(), ad.log())
                    db = (g * od * logA).sumTo(bsh)
                }
                return [da, db]
            }
        case .maximum, .minimum:
            let (ad, bd) = (a.detached(), b.detached())
            let name = op.rawValue
            return out.recording(name, inputs: [a, b]) { g in
                // Ties split the gradient evenly (as PyTorch does).
                let aWins = op == .maximum ? ad.gt(bd) : ad.lt(bd)
                let tie = ad.eq(bd)
                let z = g.zerosLike()
                let half = g * 0.5
                let ga = Tensor.where(aWins, g, Tensor.where(tie, half, z))
                let gb = Tensor.where(aWins, z, Tensor.where(tie, half, g))
                return [ga.sumTo(ash), gb.sumTo(bsh)]
            }
        }
    }

    /// A 0-d tensor holding `value` in this tensor's dtype (for scalar operands).
    public func scalarLike(_ value: Double) -> Tensor { Tensor.full([], value, dtype: dtype) }

    public static func + (a: Tensor, b: Tensor) -> Tensor { binary(.add, a, b) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { binary(.sub, a, b) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { binary(.mul, a, b) }
    public static func / (a: Tensor, b: Tensor) -> Tensor { binary(.div, a, b) }
    public static func + (a: Tensor, b: Double) -> Tensor { binary(.add, a, a.scalarLike(b)) }
    public static func - (a: Tensor, b: Double) -> Tensor { binary(.sub, a, a.scalarLike(b)) }
    public static func * (a: Tensor, b: Double) -> Tensor { binary(.mul, a, a.scalarLike(b)) }
    public static func / (a: Tensor, b: Double) -> Tensor { binary(.div, a, a.scalarLike(b)) }
    public static func + (a: Double, b: Tensor) -> Tensor { binary(.add, b.scalarLike(a), b) }
    public static func - (a: Double, b: Tensor) -> Tensor { binary(.sub, b.scalarLike(a), b) }
    public static func * (a: Double, b: Tensor) -> Tensor { binary(.mul, b.scalarLike(a), b) }
    public static func / (a: Double, b: Tensor) -> Tensor { binary(.div, b.scalarLike(a), b) }
    public static func += (a: inout Tensor, b: Tensor) { a = a + b }
    public static func -= (a: inout Tensor, b: Tensor) { a = a - b }
    public static func *= (a: inout Tensor, b: Tensor) { a = a * b }
    public static func /= (a: inout Tensor, b: Tensor) { a = a / b }

    /// Elementwise power.
    public func pow(_ exponent: Tensor) -> Tensor { Tensor.binary(.pow, self, exponent) }
    public func pow(_ exponent: Double) -> Tensor { Tensor.binary(.pow, self, scalarLike(exponent)) }
    /// Elementwise maximum (NaN propagates).
    public static func maximum(_ a: Tensor, _ b: Tensor) -> Tensor { binary(.maximum, a, b) }
    /// Elementwise minimum (NaN propagates).
    public static func minimum(_ a: Tensor, _ b: Tensor) -> Tensor { binary(.minimum, a, b) }

    /// Reduces a broadcast gradient back to `target` shape by summing broadcast dims.
    public func sumTo(_ target: [Int]) -> Tensor {
        if shape == target { return self }
        precondition(rank >= target.count, "sumTo: cannot reduce \(shapeString(shape)) to \(shapeString(target))")
        let lead = rank - target.count
        var dims: [Int] = Array(0..<lead)
        for i in 0..<target.count where target[i] == 1 && shape[lead + i] != 1 { dims.append(lead + i) }
        var r = dims.isEmpty ? self : sum(dims: dims, keepDim: true)
        if lead > 0 { r = r.reshaped(target) }
        return r
    }

    // MARK: In-place variants (value semantics: only this variable changes).

    /// In place `self = self + other`: writes into this tensor's storage when it is
    /// uniquely owned and no gradient is recorded; otherwise rebinds.
    public mutating func add_(_ other: Tensor) { inPlace(.add, other) }
    public mutating func sub_(_ other: Tensor) { inPlace(.sub, other) }
    public mutating func mul_(_ other: Tensor) { inPlace(.mul, other) }
    public mutating func div_(_ other: Tensor) { inPlace(.div, other) }
    public mutating func add_(_ other: Double) { inPlace(.add, scalarLike(other)) }
    public mutating func mul_(_ other: Double) { inPlace(.mul, scalarLike(other)) }

    mutating func inPlace(_ op: BinaryOp, _ other: Tensor) {
        let tracked = GradMode.isEnabled && (gradNode != nil || other.gradNode != nil)
        guard !tracked, dtype == other.dtype, (dtype == .float32 || dtype == .float64),
              (try? ShapeRules.broadcast(shape, other.shape, op: op.rawValue)) == shape else {
            let node = gradNode
            self = Tensor.binary(op, self, other)
            if !tracked, let node, node.isLeaf { gradNode = node }
            return
        }
        makeUnique()
        let oS = other.broadcastStrides(to: shape)
        func run<T: KernelFloat>(_: T.Type) {
            let d = storage.pointer.assumingMemoryBound(to: T.self)
            other.withStoragePointer(T.self) { s in
                switch op {
                case .add: accumulateStrided(d, dstStrides: strides, dstOffset: offset, s, srcStrides: oS, srcOffset: other.offset, shape: shape) { $0 + $1 }
                case .sub: accumulateStrided(d, dstStrides: strides, dstOffset: offset, s, srcStrides: oS, srcOffset: other.offset, shape: shape) { $0 - $1 }
                case .mul: accumulateStrided(d, dstStrides: strides, dstOffset: offset, s, srcStrides: oS, srcOffset: other.offset, shape: shape) { $0 * $1 }
                case .div: accumulateStrided(d, dstStrides: strides, dstOffset: offset, s, srcStrides: oS, srcOffset: other.offset, shape: shape) { $0 / $1 }
                case .pow: accumulateStrided(d, dstStrides: strides, dstOffset: offset, s, srcStrides: oS, srcOffset: other.offset, shape: shape) { T.pow($0, $1) }
                case .maximum: accumulateStrided(d, dstStrides: strides, dstOffset: offset, s, srcStrides: oS, srcOffset: other.offset, shape: shape) { $0.isNaN || $1.isNaN ? .nan : ($0 > $1 ? $0 : $1) }
                case .minimum: accumulateStrided(d, dstStrides: strides, dstOffset: offset, s, srcStrides: oS, srcOffset: other.offset, shape: shape) { $0.isNaN || $1.isNaN ? .nan : ($0 < $1 ? $0 : $1) }
                }
            }
        }
        if dtype == .float32 { run(Float.self) } else { run(Double.self) }
    }
}

// MARK: - Comparisons and select

extension Tensor {
    /// Elementwise comparison with broadcasting; returns a Bool tensor (not differentiable).
    public static func compare(_ op: CompareOp, _ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.dtype == b.dtype, "\(op.rawValue): dtype mismatch \(a.dtype) vs \(b.dtype)")
        let shape = checked { () throws(TensorError) in try ShapeRules.broadcast(a.shape, b.shape, op: op.rawValue) }
        if a.dtype.isReducedPrecision { return compare(op, a.to(.float32).detached(), b.to(.float32).detached()) }
        let out = Tensor(uninitializedShape: shape, dtype: .bool)
        let aS = a.broadcastStrides(to: shape), bS = b.broadcastStrides(to: shape)
        let dst = out.storage.pointer.assumingMemoryBound(to: Bool.self)
        func run<T: TensorElement & Comparable>(_: T.Type) {
            a.withStoragePointer(T.self) { pa in
                b.withStoragePointer(T.self) { pb in
                    let ao = a.offset, bo = b.offset
                    switch op {
                    case .eq: zipStrided(pa, aStrides: aS, aOffset: ao, pb, bStrides: bS, bOffset: bo, shape: shape, dst) { $0 == $1 }
                    case .ne: zipStrided(pa, aStrides: aS, aOffset: ao, pb, bStrides: bS, bOffset: bo, shape: shape, dst) { $0 != $1 }
                    case .lt: zipStrided(pa, aStrides: aS, aOffset: ao, pb, bStrides: bS, bOffset: bo, shape: shape, dst) { $0 < $1 }
                    case .le: zipStrided(pa, aStrides: aS, aOffset: ao, pb, bStrides: bS, bOffset: bo, shape: shape, dst) { $0 <= $1 }
                    case .gt: zipStrided(pa, aStrides: aS, aOffset: ao, pb, bStrides: bS, bOffset: bo, shape: shape, dst) { $0 > $1 }
                    case .ge: zipStrided(pa, aStrides: aS, aOffset: ao, pb, bStrides: bS, bOffset: bo, shape: shape, dst) { $0 >= $1 }
                    }
                }
            }
        }
        switch a.dtype {
        case .float32: run(Float.self)
        case .float64: run(Double.self)
        case .int32: run(Int32.self)
        case .int64: run(Int64.self)
        case .uint8: run(UInt8.self)
        case .bool:
            let ai = a.to(.uint8), bi = b.to(.uint8)
            return compare(op, ai, bi)
        default: preconditionFailure("\(op.rawValue): unsupported dtype \(a.dtype)")
        }
        return out
    }

    public func eq(_ o: Tensor) -> Tensor { .compare(.eq, self, o) }
    public func ne(_ o: Tensor) -> Tensor { .compare(.ne, self, o) }
    public func lt(_ o: Tensor) -> Tensor { .compare(.lt, self, o) }
    public func le(_ o: Tensor) -> Tensor { .compare(.le, self, o) }
    public func gt(_ o: Tensor) -> Tensor { .compare(.gt, self, o) }
    public func ge(_ o: Tensor) -> Tensor { .compare(.ge, self, o) }
    public func eq(_ v: Double) -> Tensor { .compare(.eq, self, scalarLike(v)) }
    public func ne(_ v: Double) -> Tensor { .compare(.ne, self, scalarLike(v)) }
    public func lt(_ v: Double) -> Tensor { .compare(.lt, self, scalarLike(v)) }
    public func le(_ v: Double) -> Tensor { .compare(.le, self, scalarLike(v)) }
    public func gt(_ v: Double) -> Tensor { .compare(.gt, self, scalarLike(v)) }
    public func ge(_ v: Double) -> Tensor { .compare(.ge, self, scalarLike(v)) }

    /// Picks `a` where `condition` is true, else `b` (all broadcast together). Differentiable in `a` and `b`.
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(condition.dtype == .bool, "where: condition must be bool, got \(condition.dtype)")
        precondition(a.dtype == b.dtype, "where: dtype mismatch \(a.dtype) vs \(b.dtype)")
        let s1 = checked { () throws(TensorError) in try ShapeRules.broadcast(a.shape, b.shape, op: "where") }
        let shape = checked { () throws(TensorError) in try ShapeRules.broadcast(condition.shape, s1, op: "where") }
        let out = Tensor(uninitializedShape: shape, dtype: a.dtype)
        let cS = condition.broadcastStrides(to: shape), aS = a.broadcastStrides(to: shape), bS = b.broadcastStrides(to: shape)
        let cp = condition.storage.pointer.assumingMemoryBound(to: Bool.self)
        func run<T>(_: T.Type) {
            selectStrided(cp, condStrides: cS, condOffset: condition.offset,
                          a.storage.pointer.assumingMemoryBound(to: T.self), aStrides: aS, aOffset: a.offset,
                          b.storage.pointer.assumingMemoryBound(to: T.self), bStrides: bS, bOffset: b.offset,
                          shape: shape, out.storage.pointer.assumingMemoryBound(to: T.self))
        }
        // Specialised per element width (see dispatchByWidth).
        switch a.dtype.byteSize {
        case 1: run(UInt8.self)
        case 2: run(UInt16.self)
        case 4: run(UInt32.self)
        default: run(UInt64.self)
        }
        let c = condition.detached()
        let (ash, bsh) = (a.shape, b.shape)
        return out.recording("where", inputs: [a, b]) { g in
            let z = g.zerosLike()
            return [Tensor.where(c, g, z).sumTo(ash), Tensor.where(c, z, g).sumTo(bsh)]
        }
    }
}
