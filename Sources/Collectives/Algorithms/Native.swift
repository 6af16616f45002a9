/// Simple collectives by direct exchange with every peer. They are the in-process
/// backend's "native" ops and the sequential oracle: reductions run in rank order,
/// `((x0 + x1) + x2) + ...`. Cost: every rank sends its data to every peer, O(p·n).

/// Allreduce by all-to-all exchange, reduced in rank order.
func nativeAllReduce<T: Transport>(_ t: T, _ buf: CollectiveBuffer, op: ReduceOp) throws {
    let p = t.size, r = t.rank, bytes = buf.byteCount
    guard p > 1, buf.count > 0, let base = buf.pointer else { return }
    var sends: [T.Request] = []
    for peer in 0..<p where peer != r { sends.append(try t.isend(base, bytes: bytes, to: peer, tag: 0)) }
    let acc = Scratch(t, slot: 0, bytes: bytes), tmp = Scratch(t, slot: 1, bytes: bytes)
    for j in 0..<p {
        let src: UnsafeRawPointer
        if j == r { src = UnsafeRawPointer(base) } else {
            try t.wait(t.irecv(tmp.pointer, bytes: bytes, from: j, tag: 0))
            src = UnsafeRawPointer(tmp.pointer)
        }
        if j == 0 { acc.pointer.copyMemory(from: src, byteCount: bytes) } else { reduceInto(acc.pointer, src, count: buf.count, dtype: buf.dtype, op: op) }
    }
    try t.waitAll(sends)
    base.copyMemory(from: acc.pointer, byteCount: bytes)
}

/// Reduce-scatter by sending block j to rank j; each rank reduces its block in rank order.
func nativeReduceScatter<T: Transport>(_ t: T, send: CollectiveBuffer, recv: CollectiveBuffer, counts: [Int], op: ReduceOp) throws {
    let p = t.size, r = t.rank, es = send.dtype.byteSize
    let offs = shardOffsets(counts)
    var sends: [T.Request] = []
    for peer in 0..<p where peer != r && counts[peer] > 0 {
        sends.append(try t.isend(send.pointer! + offs[peer] * es, bytes: counts[peer] * es, to: peer, tag: 0))
    }
    let mine = counts[r], bytes = mine * es
    if mine > 0 {
        let acc = Scratch(t, slot: 0, bytes: bytes), tmp = Scratch(t, slot: 1, bytes: bytes)
        for j in 0..<p {
            let src: UnsafeRawPointer
            if j == r { src = UnsafeRawPointer(send.pointer! + offs[r] * es) } else {
                try t.wait(t.irecv(tmp.pointer, bytes: bytes, from: j, tag: 0))
                src = UnsafeRawPointer(tmp.pointer)
            }
            if j == 0 { acc.pointer.copyMemory(from: src, byteCount: bytes) } else { reduceInto(acc.pointer, src, count: mine, dtype: send.dtype, op: op) }
        }
        recv.pointer!.copyMemory(from: acc.pointer, byteCount: bytes)
    }
    try t.waitAll(sends)
}

/// All-gather by sending this rank's block to every peer.
func nativeAllGather<T: Transport>(_ t: T, send: CollectiveBuffer, recv: CollectiveBuffer, counts: [Int]) throws {
    let p = t.size, r = t.rank, es = send.dtype.byteSize
    let offs = shardOffsets(counts)
    if counts[r] > 0 { (recv.pointer! + offs[r] * es).copyMemory(from: send.pointer!, byteCount: counts[r] * es) }
    var reqs: [T.Request] = []
    for peer in 0..<p where peer != r {
        if counts[r] > 0 { reqs.append(try t.isend(send.pointer!, bytes: counts[r] * es, to: peer, tag: 0)) }
        if counts[peer] > 0 { reqs.append(try t.irecv(recv.pointer! + offs[peer] * es, bytes: counts[peer] * es, from: peer, tag: 0)) }
    }
    try t.waitAll(reqs)
}

/// Broadcast by the root sending to every peer.
func nativeBroadcast<T: Transport>(_ t: T, _ buf: CollectiveBuffer, root: Int) throws {
    let p = t.size, r = t.rank
    guard p > 1 else { return }
    if r == root {
        var reqs: [T.Request] = []
        for peer in 0..<p where peer != r { reqs.append(try t.isend(buf.pointer, bytes: buf.byteCount, to: peer, tag: 0)) }
        try t.waitAll(reqs)
    } else {
        try t.wait(t.irecv(buf.pointer, bytes: buf.byteCount, from: root, tag: 0))
    }
}

/// Barrier: an empty message to and from every peer.
func nativeBarrier<T: Transport>(_ t: T) throws {
    var reqs: [T.Request] = []
    for peer in 0..<t.size where peer != t.rank {
        reqs.append(try t.isend(nil, bytes: 0, to: peer, tag: 0))
        reqs.append(try t.irecv(nil, bytes: 0, from: peer, tag: 0))
    }
    try t.waitAll(reqs)
}

/// Runs one of our allreduce algorithms (not `native`).
func runAllReduce<T: Transport>(_ t: T, _ buf: CollectiveBuffer, op: ReduceOp, options: CollectiveOptions, ctx: OpContext) throws {
    switch options.algorithm {
    case .ring:
        try ringAllReduce(t, buf, op: op, compression: options.compression, chunkBytes: options.chunkBytes)
    case .halvingDoubling, .tree, .native:
        if options.compression != .none {
            throw CollectiveError.unsupported(rank: ctx.rank, op: ctx.op, message: "compression \(options.compression.rawValue) needs algorithm ring, not \(options.algorithm.rawValue)")
        }
        if options.algorithm == .tree {
            try treeAllReduce(t, buf, op: op, chunkBytes: options.chunkBytes)
        } else if options.algorithm == .halvingDoubling {
            try halvingDoublingAllReduce(t, buf, op: op)
        } else {
            try nativeAllReduce(t, buf, op: op)
        }
    }
}
