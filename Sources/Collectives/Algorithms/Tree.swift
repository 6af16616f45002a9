/// Binary-tree allreduce: reduce up the tree rooted at rank 0 (children `2r+1`, `2r+2`),
/// then broadcast down, both chunked so that levels work on different chunks at once.
///
/// `2 log2 p` latency terms, but the root link carries `2n` bytes: good for small
/// messages, not bandwidth-optimal. Reduction order: `t(r) = (x_r + t(2r+1)) + t(2r+2)`.
func treeAllReduce<T: Transport>(_ t: T, _ buf: CollectiveBuffer, op: ReduceOp, chunkBytes: Int) throws {
    let p = t.size, r = t.rank, n = buf.count, es = buf.dtype.byteSize
    guard p > 1, n > 0, let base = buf.pointer else { return }
    let chunk = Swift.max(1, chunkBytes / es)
    let children = [2 * r + 1, 2 * r + 2].filter { $0 < p }
    let parent = r == 0 ? -1 : (r - 1) / 2
    let tmp = Scratch(t, slot: 0, bytes: 2 * chunk * es)
    let ranges = stride(from: 0, to: n, by: chunk).map { $0..<Swift.min($0 + chunk, n) }

    var sends: [T.Request] = []
    for c in ranges {
        let at = base + c.lowerBound * es
        let reqs = try children.enumerated().map { i, child in
            try t.irecv(tmp.pointer + i * chunk * es, bytes: c.count * es, from: child, tag: 6)
        }
        for (i, req) in reqs.enumerated() {
            try t.wait(req)
            reduceInto(at, tmp.pointer + i * chunk * es, count: c.count, dtype: buf.dtype, op: op)
        }
        if parent >= 0 { sends.append(try t.isend(at, bytes: c.count * es, to: parent, tag: 6)) }
    }
    try t.waitAll(sends)
    sends.removeAll()
    let downs = parent >= 0 ? try ranges.map { try t.irecv(base + $0.lowerBound * es, bytes: $0.count * es, from: parent, tag: 7) } : []
    for (k, c) in ranges.enumerated() {
        if parent >= 0 { try t.wait(downs[k]) }
        for child in children { sends.append(try t.isend(base + c.lowerBound * es, bytes: c.count * es, to: child, tag: 7)) }
    }
    try t.waitAll(sends)
}
