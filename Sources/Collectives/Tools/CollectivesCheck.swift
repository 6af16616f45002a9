import Foundation
import TensorCore

/// The cross-check behind `loom collectives-check`: every algorithm × size × dtype on a
/// real group (MPI under mpirun) against (a) the backend's native allreduce in the same
/// run and (b) the same algorithm run in this process on an `InProcessWorld` of the same
/// size — which must agree bit for bit, since the reduction order is the algorithm's.
/// Also uneven reduce-scatter/all-gather, broadcast, sendRecv, barrier, compression and
/// sparse allreduce. Every rank computes every case; verdicts are combined across ranks.
public enum CollectivesCheck {
    /// One checked case.
    public struct Case: Sendable {
        /// What was checked ("allreduce ring float64 n=1000").
        public var name: String
        /// True if every rank passed.
        public var passed: Bool
        /// The first failure on this rank, if any.
        public var detail: String
    }

    /// Sizes swept by default: 0, 1, tiny primes, not divisible by the world size, large.
    public static func defaultSizes(worldSize p: Int) -> [Int] {
        [0, 1, 2, 3, 5, 7, 1000, 64 * p + 1, 100_003, 1_000_003]
    }

    /// Deterministic input of rank `r`, element `i` (magnitudes over 7 decades).
    static func value(rank r: Int, index i: Int) -> Double {
        sin(Double(i &* 7 &+ r &* 13 &+ 1)) * pow(10, Double((i + 2 * r) % 7 - 3))
    }

    static func makeInput<T: BinaryFloatingPoint>(_ type: T.Type, rank: Int, n: Int) -> [T] {
        (0..<n).map { T(value(rank: rank, index: $0)) }
    }

    /// Runs all cases on `group`; `log` receives one line per case (rank 0 prints).
    public static func run(group g: any ProcessGroup, sizes: [Int]? = nil, log: (Case) -> Void) throws -> [Case] {
        let p = g.size
        var cases: [Case] = []
        func record(_ name: String, _ detail: String) throws {
            // Combine verdicts across ranks: min over ranks of pass (1) / fail (0).
            var ok: [Int32] = [detail.isEmpty ? 1 : 0]
            try ok.withUnsafeMutableBufferPointer { try g.allReduce(CollectiveBuffer($0), op: .min) }
            let c = Case(name: name, passed: ok[0] == 1, detail: detail)
            cases.append(c)
            log(c)
        }

        for n in sizes ?? defaultSizes(worldSize: p) {
            try checkAllReduce(Float.self, g, n: n, record: record)
            try checkAllReduce(Double.self, g, n: n, record: record)
        }
        try checkCompression(g, record: record)
        try checkShards(g, record: record)
        try checkPointToPoint(g, record: record)
        try checkSparse(g, record: record)
        return cases
    }

    static func checkAllReduce<T: BinaryFloatingPoint & TensorElement>(_ type: T.Type, _ g: any ProcessGroup, n: Int, record: (String, String) throws -> Void) throws {
        let p = g.size, r = g.rank
        let input = makeInput(T.self, rank: r, n: n)
        var native = input
        try native.withUnsafeMutableBufferPointer { try g.allReduce(CollectiveBuffer($0), options: .native) }
        // Float64 reference sum and magnitude for the tolerance against MPI's own order.
        let all = (0..<p).map { makeInput(T.self, rank: $0, n: n) }
        var exact = [Double](repeating: 0, count: n), mag = [Double](repeating: 0, count: n)
        for q in 0..<p { for i in 0..<n { exact[i] += Double(all[q][i]); mag[i] += abs(Double(all[q][i])) } }
        let eps = T.self == Float.self ? 1.2e-7 : 2.3e-16
        func vsExact(_ v: [T]) -> String {
            for i in 0..<n where abs(Double(v[i]) - exact[i]) > 2 * Double(p) * eps * mag[i] {
                return "element \(i): \(v[i]) vs exact \(exact[i])"
            }
            return ""
        }
        try record("allreduce native \(T.self == Float.self ? "float32" : "float64") n=\(n) vs float64 sum", vsExact(native))
        for algorithm in [AllReduceAlgorithm.ring, .halvingDoubling, .tree] {
            let opts = CollectiveOptions(algorithm: algorithm, chunkBytes: n > 10_000 ? 64 << 10 : 64)
            var ours = input
            try ours.withUnsafeMutableBufferPointer { try g.allReduce(CollectiveBuffer($0), options: opts) }
            let local = try InProcessWorld.run(size: p) { ig -> [T] in
                var v = all[ig.rank]
                try v.withUnsafeMutableBufferPointer { try ig.allReduce(CollectiveBuffer($0), options: opts) }
                return v
            }[r]
            var detail = ""
            if let i = (0..<n).first(where: { ours[$0] != local[$0] && !(ours[$0].isNaN && local[$0].isNaN) }) {
                detail = "element \(i): \(ours[i]) differs from the in-process run \(local[i]) (bitwise)"
            } else {
                detail = vsExact(ours)
                if detail.isEmpty, let i = (0..<n).first(where: { abs(Double(ours[$0]) - Double(native[$0])) > 4 * Double(p) * eps * mag[$0] }) {
                    detail = "element \(i): \(ours[i]) vs native \(native[i])"
                }
            }
            try record("allreduce \(algorithm.rawValue) \(T.self == Float.self ? "float32" : "float64") n=\(n) vs native + in-process", detail)
        }
    }

    static func checkCompression(_ g: any ProcessGroup, record: (String, String) throws -> Void) throws {
        let p = g.size, r = g.rank
        for compression in [WireCompression.float16, .bfloat16] {
            for n in [1, 1001, 100_003] {
                let all = (0..<p).map { q in (0..<n).map { Float(value(rank: q, index: $0) / 10) } }
                let opts = CollectiveOptions(algorithm: .ring, compression: compression, chunkBytes: 4096)
                var ours = all[r]
                try ours.withUnsafeMutableBufferPointer { try g.allReduce(CollectiveBuffer($0), options: opts) }
                let local = try InProcessWorld.run(size: p) { ig -> [Float] in
                    var v = all[ig.rank]
                    try v.withUnsafeMutableBufferPointer { try ig.allReduce(CollectiveBuffer($0), options: opts) }
                    return v
                }[r]
                let u = compression == .float16 ? 0x1p-11 : 0x1p-8
                let absFloor = compression == .float16 ? 0x1p-25 : 0   // half the fp16 subnormal spacing
                var detail = ""
                for i in 0..<n {
                    let exact = (0..<p).reduce(0.0) { $0 + Double(all[$1][i]) }
                    let mag = (0..<p).reduce(0.0) { $0 + abs(Double(all[$1][i])) }
                    if ours[i] != local[i] { detail = "element \(i): \(ours[i]) differs from in-process \(local[i])"; break }
                    if abs(Double(ours[i]) - exact) > Double(p) * (u * mag + absFloor) + 1e-6 * mag { detail = "element \(i): \(ours[i]) vs exact \(exact) beyond p·u·Σ|x|"; break }
                }
                try record("allreduce ring \(compression.rawValue)-wire n=\(n) vs bound + in-process", detail)
            }
        }
    }

    static func checkShards(_ g: any ProcessGroup, record: (String, String) throws -> Void) throws {
        let p = g.size, r = g.rank
        for counts in [shardCounts(total: 1_003, parts: p), (0..<p).map { $0 == 0 ? 0 : 17 * $0 + 3 }] {
            let total = counts.reduce(0, +), offs = shardOffsets(counts)
            let all = (0..<p).map { makeInput(Double.self, rank: $0, n: total) }
            for algorithm in [AllReduceAlgorithm.native, .ring] {
                var send = all[r], recv = [Double](repeating: .nan, count: counts[r])
                try send.withUnsafeMutableBufferPointer { s in
                    try recv.withUnsafeMutableBufferPointer { rv in
                        try g.reduceScatter(send: CollectiveBuffer(s), recv: CollectiveBuffer(rv), counts: counts, options: CollectiveOptions(algorithm: algorithm, chunkBytes: 256))
                    }
                }
                var detail = ""
                for k in 0..<counts[r] {
                    let exact = (0..<p).reduce(0.0) { $0 + all[$1][offs[r] + k] }
                    let mag = (0..<p).reduce(0.0) { $0 + abs(all[$1][offs[r] + k]) }
                    if abs(recv[k] - exact) > 1e-14 * Double(p) * mag { detail = "element \(k): \(recv[k]) vs \(exact)"; break }
                }
                try record("reduceScatter \(algorithm.rawValue) counts=\(counts)", detail)

                var mine = (0..<counts[r]).map { Int64(r * 1_000_000 + $0) }
                var gathered = [Int64](repeating: -1, count: total)
                try mine.withUnsafeMutableBufferPointer { s in
                    try gathered.withUnsafeMutableBufferPointer { rv in
                        try g.allGather(send: CollectiveBuffer(s), recv: CollectiveBuffer(rv), counts: counts, options: CollectiveOptions(algorithm: algorithm, chunkBytes: 256))
                    }
                }
                var expect = [Int64]()
                for q in 0..<p { expect += (0..<counts[q]).map { Int64(q * 1_000_000 + $0) } }
                try record("allGather \(algorithm.rawValue) counts=\(counts)", gathered == expect ? "" : "gathered blocks differ from the expected rank-major layout")
            }
        }
    }

    static func checkPointToPoint(_ g: any ProcessGroup, record: (String, String) throws -> Void) throws {
        let p = g.size, r = g.rank
        var b = [Float](repeating: Float(r), count: 4099)
        try b.withUnsafeMutableBufferPointer { try g.broadcast(CollectiveBuffer($0), root: p - 1) }
        try record("broadcast root \(p - 1)", b.allSatisfy { $0 == Float(p - 1) } ? "" : "received \(b[0]), expected \(p - 1)")
        var out = [Double](repeating: Double(r), count: 100_000), inn = [Double](repeating: -1, count: 100_000)
        try out.withUnsafeMutableBufferPointer { o in
            try inn.withUnsafeMutableBufferPointer { i in
                try g.sendRecv(send: CollectiveBuffer(o), to: (r + 1) % p, recv: CollectiveBuffer(i), from: (r + p - 1) % p, tag: 5)
            }
        }
        let left = Double((r + p - 1) % p)
        try record("sendRecv ring shift", inn.allSatisfy { $0 == left } ? "" : "received \(inn[0]), expected \(left)")
        try g.barrier()
        try record("barrier", "")
    }

    static func checkSparse(_ g: any ProcessGroup, record: (String, String) throws -> Void) throws {
        let p = g.size, r = g.rank, n = 10_007
        let c = ChunkTopKCompressor(count: n, chunkSize: 64, topChunks: 12)
        var grad = makeInput(Float.self, rank: r, n: n)
        try grad.withUnsafeMutableBufferPointer { try g.sparseAllReduce($0, compressor: c) }
        // Oracle: every rank's selection, computed here with a fresh compressor each.
        var expect = [Float](repeating: 0, count: n)
        for q in 0..<p {
            let cq = ChunkTopKCompressor(count: n, chunkSize: 64, topChunks: 12)
            let sent = makeInput(Float.self, rank: q, n: n).withUnsafeBufferPointer { cq.compress($0) }
            expect.withUnsafeMutableBufferPointer { sent.accumulate(into: $0) }
        }
        try record("sparse top-k allreduce n=\(n)", grad == expect ? "" : "differs from the sum of every rank's selected chunks")
    }
}
