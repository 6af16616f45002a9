import Foundation

/// The measurement behind `loom allreduce-bench`: allreduce bus bandwidth of our ring
/// against the backend's native allreduce (MPI_Allreduce under mpirun) in the same run,
/// and fused (lazy) against one-by-one allreduce of many small tensors.
///
/// Bus bandwidth = `2 (p-1)/p · bytes / time` (the NCCL-tests convention: the bytes
/// each rank must move in a bandwidth-optimal allreduce). A time is the slowest rank's
/// (max over ranks) per-op time of one repeat; the reported value is the median repeat.
public enum AllReduceBench {
    /// One size of the bandwidth table.
    public struct Row: Sendable {
        public var bytes: Int
        /// Blocking MPI_Allreduce (the reference).
        public var nativeSeconds: Double
        /// The group's `.native` allreduce (MPI_Iallreduce polled with a timeout).
        public var pollingSeconds: Double
        public var ringSeconds: Double
        public var worldSize: Int
        /// Bus bandwidth in bytes/s for a per-op time.
        public func busBandwidth(_ seconds: Double) -> Double {
            seconds > 0 ? 2 * Double(worldSize - 1) / Double(worldSize) * Double(bytes) / seconds : 0
        }
    }

    /// The fused-vs-one-by-one result.
    public struct LazyResult: Sendable {
        public var tensors: Int
        public var totalBytes: Int
        public var oneByOneSeconds: Double
        public var fusedSeconds: Double
        public var ratio: Double { fusedSeconds > 0 ? oneByOneSeconds / fusedSeconds : 0 }
    }

    /// Default sizes: 4 KiB to 64 MiB in steps of 4x.
    public static let defaultSizes = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
    }

    /// The slowest rank's value.
    static func maxOverRanks(_ g: any ProcessGroup, _ x: Double) throws -> Double {
        var v = [x]
        try v.withUnsafeMutableBufferPointer { try g.allReduce(CollectiveBuffer($0), op: .max) }
        return v[0]
    }

    /// Per-op seconds of `iterations` back-to-back allreduces, max over ranks.
    static func timeOps(_ g: any ProcessGroup, iterations: Int, _ body: () throws -> Void) throws -> Double {
        try g.barrier()
        let t0 = now()
        for _ in 0..<iterations { try body() }
        return try maxOverRanks(g, (now() - t0) / Double(iterations))
    }

    /// The reference allreduce: blocking `MPI_Allreduce` on an MPI group, else the
    /// backend's native allreduce.
    static func reference(_ g: any ProcessGroup, _ buf: UnsafeMutableBufferPointer<Float>) throws {
        if let m = g as? MPIProcessGroup {
            try m.referenceAllReduce(CollectiveBuffer(buf))
        } else {
            try g.allReduce(buf, options: .native)
        }
    }

    /// Measures every size: `repeats` repeats, reference (MPI_Allreduce) and ring
    /// interleaved in each.
    public static func bandwidth(group g: any ProcessGroup, sizes: [Int] = defaultSizes, repeats: Int = 7,
                                 ring: CollectiveOptions = .ring, progress: (Row) -> Void = { _ in }) throws -> [Row] {
        var rows: [Row] = []
        for bytes in sizes {
            let n = bytes / 4
            let buf = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
            defer { buf.deallocate() }
            buf.initialize(repeating: 0)
            let iterations = max(1, min(200, (32 << 20) / bytes))
            // Correctness first (small integers: every order sums exactly), which also warms up.
            for i in 0..<n { buf[i] = Float(i % 7 + g.rank) }
            try g.allReduce(buf, options: ring)
            let expect = { (i: Int) in Float(g.size * (i % 7) + g.size * (g.size - 1) / 2) }
            if let bad = (0..<n).first(where: { buf[$0] != expect($0) }) {
                throw CollectiveError.backend(rank: g.rank, op: "allreduce-bench ring check", step: -1,
                                              message: "\(bytes) bytes: element \(bad) is \(buf[bad]), expected \(expect(bad))")
            }
            buf.update(repeating: 0)
            try reference(g, buf)
            try g.allReduce(buf, options: .native)
            var nat: [Double] = [], ours: [Double] = [], polling: [Double] = []
            for _ in 0..<repeats {
                nat.append(try timeOps(g, iterations: iterations) { try reference(g, buf) })
                polling.append(try timeOps(g, iterations: iterations) { try g.allReduce(buf, options: .native) })
                ours.append(try timeOps(g, iterations: iterations) { try g.allReduce(buf, options: ring) })
            }
            let row = Row(bytes: bytes, nativeSeconds: median(nat), pollingSeconds: median(polling), ringSeconds: median(ours), worldSize: g.size)
            rows.append(row)
            progress(row)
        }
        return rows
    }

    /// Sizes of the lazy benchmark: `count` tensors of 1–100 KiB (deterministic).
    public static func lazySizes(count: Int = 200) -> [Int] {
        (0..<count).map { k in (1 + (k &* 7919 &+ 13) % 100) * 1024 / 4 }
    }

    /// One-by-one (a blocking reference MPI_Allreduce per tensor) against fused
    /// (`LazyAllReduce` with `fusedOptions` and `bucketBytes`).
    public static func lazy(group g: any ProcessGroup, count: Int = 200, repeats: Int = 7,
                            fusedOptions: CollectiveOptions = .ring, bucketBytes: Int = 4 << 20) throws -> LazyResult {
        let sizes = lazySizes(count: count)
        let bufs = sizes.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: $0) }
        defer { bufs.forEach { $0.deallocate() } }
        bufs.forEach { $0.initialize(repeating: 0) }
        var one: [Double] = [], fused: [Double] = []
        let fuser = LazyAllReduce(group: g, bucketBytes: bucketBytes, options: fusedOptions)
        for rep in 0...repeats {
            let a = try timeOps(g, iterations: 1) { for b in bufs { try reference(g, b) } }
            let f = try timeOps(g, iterations: 1) {
                for b in bufs { fuser.add(b) }
                try fuser.flush()
            }
            if rep > 0 { one.append(a); fused.append(f) }   // repeat 0 is the warm-up
        }
        return LazyResult(tensors: count, totalBytes: sizes.reduce(0, +) * 4, oneByOneSeconds: median(one), fusedSeconds: median(fused))
    }

    /// Formats a byte count as "4 KiB", "64 MiB".
    public static func sizeText(_ bytes: Int) -> String {
        bytes >= 1 << 20 ? "\(bytes >> 20) MiB" : bytes >= 1 << 10 ? "\(bytes >> 10) KiB" : "\(bytes) B"
    }
}
