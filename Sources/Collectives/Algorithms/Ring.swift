import TensorCore

/// Ring allreduce (Patarasuk & Yuan 2009; Baidu/Horovod): a reduce-scatter around the ring
/// `r -> r+1` followed by an all-gather, each `p - 1` steps.
///
/// The vector is split into `p` near-equal segments (`shardCounts`), each segment into
/// chunks of `chunkBytes`; a chunk is forwarded as soon as it is reduced, so the reduction
/// of one chunk overlaps the transfer of the next (pipelining), and the receives of the
/// next step are posted before the current step is processed (double-buffered).
/// Bytes sent per rank: `2 (p-1)/p · n` — bandwidth-optimal.
/// Reduction order of segment `j`: `((x_j + x_{j+1}) + ...) + x_{j-1}`.
/// With compression, every hop carries 16-bit values; accumulation is Float32; the
/// owner of a segment rounds its final value once, so all ranks end bitwise equal.
func ringAllReduce<T: Transport>(_ t: T, _ buf: CollectiveBuffer, op: ReduceOp, compression: WireCompression, chunkBytes: Int) throws {
    let p = t.size, n = buf.count
    guard p > 1, n > 0, let base = buf.pointer else { return }
    let counts = shardCounts(total: n, parts: p)
    let ring = RingPlan(t: t, counts: counts, dtype: buf.dtype, compression: compression, chunkBytes: chunkBytes)
    guard compression == .none else {
        let wire = Scratch(t, slot: 0, bytes: n * 2)
        try ring.reduceScatter(t, base: base, shift: 0, op: op, wire: wire.pointer)
        try ring.allGather(t, base: base, owned: ring.seg(t.rank + 1), wire: wire.pointer)
        return
    }
    // The two halves fused: each chunk of the owned segment starts its all-gather trip
    // as soon as the reduce-scatter's last step has reduced it.
    var early: [T.Request] = []
    try ring.reduceScatter(t, base: base, shift: 0, op: op, wire: nil) { c in
        early.append(try t.isend(base + (ring.offs[ring.seg(t.rank + 1)] + c.lowerBound) * ring.es, bytes: c.count * ring.es, to: ring.seg(t.rank + 1), tag: 2))
    }
    try ring.allGather(t, base: base, owned: ring.seg(t.rank + 1), wire: nil, ownedSent: early)
}

/// Ring reduce-scatter with uneven `counts` (rank `r` ends with block `r`); copies `send`
/// to scratch and runs the reduce-scatter half of the ring.
func ringReduceScatter<T: Transport>(_ t: T, send: CollectiveBuffer, recv: CollectiveBuffer, counts: [Int], op: ReduceOp, chunkBytes: Int) throws {
    let es = send.dtype.byteSize, total = send.count, r = t.rank
    let offs = shardOffsets(counts)
    if t.size == 1 || total == 0 {
        if counts[r] > 0 { recv.pointer!.copyMemory(from: send.pointer! + offs[r] * es, byteCount: counts[r] * es) }
        return
    }
    let scratch = Scratch(t, slot: 1, bytes: total * es)
    scratch.pointer.copyMemory(from: send.pointer!, byteCount: total * es)
    let ring = RingPlan(t: t, counts: counts, dtype: send.dtype, compression: .none, chunkBytes: chunkBytes)
    try ring.reduceScatter(t, base: scratch.pointer, shift: -1, op: op, wire: nil)
    if counts[r] > 0 { recv.pointer!.copyMemory(from: scratch.pointer + offs[r] * es, byteCount: counts[r] * es) }
}

/// Ring all-gather with uneven `counts`: each block travels `p - 1` hops to the right.
func ringAllGather<T: Transport>(_ t: T, send: CollectiveBuffer, recv: CollectiveBuffer, counts: [Int], chunkBytes: Int) throws {
    let es = send.dtype.byteSize, r = t.rank
    let offs = shardOffsets(counts)
    if counts[r] > 0 { (recv.pointer! + offs[r] * es).copyMemory(from: send.pointer!, byteCount: counts[r] * es) }
    guard t.size > 1, recv.count > 0 else { return }
    let ring = RingPlan(t: t, counts: counts, dtype: send.dtype, compression: .none, chunkBytes: chunkBytes)
    try ring.allGather(t, base: recv.pointer!, owned: r, wire: nil)
}

/// The segment layout of one ring op.
struct RingPlan {
    let p: Int
    let rank: Int
    let counts: [Int]
    let offs: [Int]
    let dtype: DType
    let es: Int
    let ws: Int
    let compression: WireCompression
    let chunkElems: Int

    init<T: Transport>(t: T, counts: [Int], dtype: DType, compression: WireCompression, chunkBytes: Int) {
        p = t.size
        rank = t.rank
        self.counts = counts
        offs = shardOffsets(counts)
        self.dtype = dtype
        es = dtype.byteSize
        ws = wireByteSize(compression, dtype: dtype)
        self.compression = compression
        chunkElems = Swift.max(1, chunkBytes / ws)
    }

    /// Segment index `k mod p`.
    func seg(_ k: Int) -> Int { ((k % p) + p) % p }

    /// Chunk ranges (relative to the segment start) of segment `s`.
    func chunks(_ s: Int) -> [Range<Int>] {
        stride(from: 0, to: counts[s], by: chunkElems).map { $0..<Swift.min($0 + chunkElems, counts[s]) }
    }

    /// In-place reduce-scatter over `base`: at step `s` rank `r` sends segment
    /// `r - s + shift` and receives, reduces segment `r - s - 1 + shift`; after `p - 1`
    /// steps it owns segment `r + 1 + shift` fully reduced. `wire` (n·2 bytes) is the
    /// encode buffer when compressing.
    /// `finished`, if given, is called with each chunk (range within the segment) of the
    /// last step's segment — the one this rank ends up owning — once it is fully reduced.
    func reduceScatter<T: Transport>(_ t: T, base: UnsafeMutableRawPointer, shift: Int, op: ReduceOp, wire: UnsafeMutableRawPointer?,
                                     finished: ((Range<Int>) throws -> Void)? = nil) throws {
        let right = seg(rank + 1), left = seg(rank - 1)
        let maxSeg = counts.max() ?? 0
        let recvBuf = Scratch(t, slot: 2, bytes: 2 * maxSeg * ws)
        let decoded = compression == .none ? nil : Scratch(t, slot: 3, bytes: chunkElems * 4)
        let steps = p - 1
        var sends: [T.Request] = []
        sends.reserveCapacity(steps * 4)

        func post(_ s: Int) throws -> [T.Request] {
            let rs = seg(rank - s - 1 + shift)
            let slot = recvBuf.pointer + (s % 2) * maxSeg * ws
            return try chunks(rs).map { try t.irecv(slot + $0.lowerBound * ws, bytes: $0.count * ws, from: left, tag: 1) }
        }
        func sendChunk(_ segment: Int, _ c: Range<Int>) throws {
            let at = offs[segment] + c.lowerBound
            if let wire {
                encodeWire(base + at * es, wire + at * ws, count: c.count, compression)
                sends.append(try t.isend(wire + at * ws, bytes: c.count * ws, to: right, tag: 1))
            } else {
                sends.append(try t.isend(base + at * es, bytes: c.count * es, to: right, tag: 1))
            }
        }

        var pending = try post(0)
        let first = seg(rank + shift)
        for c in chunks(first) { try sendChunk(first, c) }
        for s in 0..<steps {
            let next = s + 1 < steps ? try post(s + 1) : []
            let rs = seg(rank - s - 1 + shift)
            let slot = recvBuf.pointer + (s % 2) * maxSeg * ws
            for (k, c) in chunks(rs).enumerated() {
                try t.wait(pending[k])
                let dst = base + (offs[rs] + c.lowerBound) * es
                let src = slot + c.lowerBound * ws
                if let decoded {
                    decodeWire(src, decoded.pointer, count: c.count, compression)
                    reduceInto(dst, decoded.pointer, count: c.count, dtype: dtype, op: op)
                } else {
                    reduceInto(dst, src, count: c.count, dtype: dtype, op: op)
                }
                if s + 1 < steps { try sendChunk(rs, c) } else { try finished?(c) }
            }
            pending = next
        }
        try t.waitAll(sends)
    }

    /// In-place all-gather over `base`: rank `r` starts owning segment `owned`; at step `s`
    /// it forwards segment `owned - s` and receives `owned - s - 1`. Chunks are forwarded
    /// as they arrive. With `wire`, the owner rounds its segment to the wire format once
    /// and everyone decodes the same 16-bit values.
    /// `ownedSent`: the sends of the owned segment's chunks, already issued by the caller
    /// (fused with the reduce-scatter); nil: sent here.
    func allGather<T: Transport>(_ t: T, base: UnsafeMutableRawPointer, owned: Int, wire: UnsafeMutableRawPointer?,
                                 ownedSent: [T.Request]? = nil) throws {
        let right = seg(rank + 1), left = seg(rank - 1)
        let steps = p - 1
        var reqs: [[T.Request]] = []
        // Every step receives a distinct segment, so all receives can be posted now.
        for s in 0..<steps {
            let rs = seg(owned - s - 1)
            let dst = wire ?? base
            let w = wire == nil ? es : ws
            reqs.append(try chunks(rs).map { try t.irecv(dst + (offs[rs] + $0.lowerBound) * w, bytes: $0.count * w, from: left, tag: 2) })
        }
        var sends: [T.Request] = ownedSent ?? []
        func forward(_ segment: Int, _ c: Range<Int>) throws {
            let at = offs[segment] + c.lowerBound
            if let wire {
                sends.append(try t.isend(wire + at * ws, bytes: c.count * ws, to: right, tag: 2))
            } else {
                sends.append(try t.isend(base + at * es, bytes: c.count * es, to: right, tag: 2))
            }
        }
        if let wire, counts[owned] > 0 {
            let at = offs[owned]
            encodeWire(base + at * es, wire + at * ws, count: counts[owned], compression)
            decodeWire(wire + at * ws, base + at * es, count: counts[owned], compression)
        }
        if ownedSent == nil {
            for c in chunks(owned) { try forward(owned, c) }
        }
        for s in 0..<steps {
            let rs = seg(owned - s - 1)
            for (k, c) in chunks(rs).enumerated() {
                try t.wait(reqs[s][k])
                if let wire {
                    let at = offs[rs] + c.lowerBound
                    decodeWire(wire + at * ws, base + at * es, count: c.count, compression)
                }
                if s + 1 < steps { try forward(rs, c) }
            }
        }
        try t.waitAll(sends)
    }
}
