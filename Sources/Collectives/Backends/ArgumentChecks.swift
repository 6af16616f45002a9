import TensorCore

// MARK: - Argument checks shared by the backends

extension ProcessGroup {
    func checkReduceDType(_ dtype: DType, ctx: OpContext, compression: WireCompression) throws {
        switch dtype {
        case .float32, .float64, .int32, .int64: break
        default:
            throw CollectiveError.invalidArgument(rank: rank, op: ctx.op, message: "dtype \(dtype) cannot be reduced; expected float32, float64, int32 or int64")
        }
        if compression != .none && dtype != .float32 {
            throw CollectiveError.unsupported(rank: rank, op: ctx.op, message: "compression \(compression.rawValue) needs float32 data, got \(dtype)")
        }
    }

    func checkCounts(_ counts: [Int], send: CollectiveBuffer, recv: CollectiveBuffer, gather: Bool, ctx: OpContext) throws {
        guard counts.count == size else {
            throw CollectiveError.invalidArgument(rank: rank, op: ctx.op, message: "counts has \(counts.count) entries, expected one per rank (\(size))")
        }
        if let bad = counts.firstIndex(where: { $0 < 0 }) {
            throw CollectiveError.invalidArgument(rank: rank, op: ctx.op, message: "counts[\(bad)] = \(counts[bad]) is negative")
        }
        guard send.dtype == recv.dtype else {
            throw CollectiveError.invalidArgument(rank: rank, op: ctx.op, message: "send dtype \(send.dtype) differs from recv dtype \(recv.dtype)")
        }
        let total = counts.reduce(0, +)
        let (expectSend, expectRecv) = gather ? (counts[rank], total) : (total, counts[rank])
        guard send.count == expectSend, recv.count == expectRecv else {
            throw CollectiveError.invalidArgument(rank: rank, op: ctx.op, message: "send has \(send.count) and recv \(recv.count) elements, expected \(expectSend) and \(expectRecv) for counts \(counts)")
        }
    }

    func checkPeer(_ peer: Int, ctx: OpContext, what: String) throws {
        guard peer >= 0 && peer < size else {
            throw CollectiveError.invalidArgument(rank: rank, op: ctx.op, message: "\(what) rank \(peer) out of range 0..<\(size)")
        }
    }

    func checkTag(_ tag: Int, ctx: OpContext) throws {
        guard tag >= 0 && tag <= 32767 else {
            throw CollectiveError.invalidArgument(rank: rank, op: ctx.op, message: "tag \(tag) out of range 0...32767")
        }
    }
}
