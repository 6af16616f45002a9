/// Rabenseifner's allreduce: recursive vector halving (reduce-scatter) then recursive
/// doubling (all-gather), `2 log2 p` steps and `2 (p'-1)/p' · n` bytes per rank.
///
/// Non-power-of-two sizes: with `p'` the largest power of two `<= p` and `rem = p - p'`,
/// even ranks `2i < 2 rem` first hand their vector to rank `2i + 1` and sit out; the
/// remaining `p'` ranks (virtual ranks) run the power-of-two algorithm; at the end each
/// odd rank `2i + 1` sends the result back to `2i`.
/// Reduction order: see `AllReduceAlgorithm.halvingDoubling`. Halves split at
/// `lo + (hi - lo) / 2`; the lower virtual rank keeps the lower half.
func halvingDoublingAllReduce<T: Transport>(_ t: T, _ buf: CollectiveBuffer, op: ReduceOp) throws {
    let p = t.size, r = t.rank, n = buf.count, es = buf.dtype.byteSize
    guard p > 1, n > 0, let base = buf.pointer else { return }
    var pp = 1
    while pp * 2 <= p { pp *= 2 }
    let rem = p - pp
    let tmp = Scratch(t, slot: 0, bytes: n * es)

    // Fold the extra ranks.
    var vrank: Int
    if r < 2 * rem {
        if r % 2 == 0 {
            try t.wait(t.isend(base, bytes: n * es, to: r + 1, tag: 3))
            try t.wait(t.irecv(base, bytes: n * es, from: r + 1, tag: 3))
            return
        }
        try t.wait(t.irecv(tmp.pointer, bytes: n * es, from: r - 1, tag: 3))
        reduceInto(base, tmp.pointer, count: n, dtype: buf.dtype, op: op)
        vrank = r / 2
    } else {
        vrank = r - rem
    }
    func real(_ v: Int) -> Int { v < rem ? 2 * v + 1 : v + rem }

    // Reduce-scatter by recursive halving.
    var lo = 0, hi = n
    var history: [(lo: Int, hi: Int, keptLower: Bool)] = []
    var m = pp / 2
    while m >= 1 {
        let partner = real(vrank ^ m)
        let mid = lo + (hi - lo) / 2
        let (keep, give) = vrank & m == 0 ? ((lo, mid), (mid, hi)) : ((mid, hi), (lo, mid))
        try t.sendRecv(base + give.0 * es, sendBytes: (give.1 - give.0) * es, to: partner,
                       tmp.pointer + keep.0 * es, recvBytes: (keep.1 - keep.0) * es, from: partner, tag: 4)
        reduceInto(base + keep.0 * es, tmp.pointer + keep.0 * es, count: keep.1 - keep.0, dtype: buf.dtype, op: op)
        history.append((lo, hi, vrank & m == 0))
        (lo, hi) = keep
        m /= 2
    }
    // All-gather by recursive doubling.
    m = 1
    while m < pp {
        let partner = real(vrank ^ m)
        let (plo, phi, keptLower) = history.removeLast()
        let mid = plo + (phi - plo) / 2
        let other = keptLower ? (mid, phi) : (plo, mid)
        try t.sendRecv(base + lo * es, sendBytes: (hi - lo) * es, to: partner,
                       base + other.0 * es, recvBytes: (other.1 - other.0) * es, from: partner, tag: 5)
        (lo, hi) = (plo, phi)
        m *= 2
    }
    // Unfold.
    if r < 2 * rem { try t.wait(t.isend(base, bytes: n * es, to: r - 1, tag: 3)) }
}
