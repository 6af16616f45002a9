import XCTest
import TensorCore
@testable import Collectives

final class AllReduceTests: XCTestCase {
    static let sizes = [0, 1, 2, 3, 5, 7, 1000, 20_011]

    /// Float64, every algorithm, world sizes 1–5: bitwise equal to the documented order.
    func testFloat64BitwiseAgainstDocumentedOrder() throws {
        for p in 1...5 {
            for n in Self.sizes {
                let xs = inputs(p: p, n: n)
                for algorithm in AllReduceAlgorithm.allCases {
                    let expect = oracle(algorithm, xs)
                    let got = try onRanks(p) { g -> [Double] in
                        var v = xs[g.rank]
                        try v.withUnsafeMutableBufferPointer {
                            try g.allReduce($0, options: CollectiveOptions(algorithm: algorithm, chunkBytes: 1024))
                        }
                        return v
                    }
                    for r in 0..<p { assertBitwise(got[r], expect, "\(algorithm) p=\(p) n=\(n) rank \(r)") }
                }
            }
        }
    }

    /// The bitwise oracles differ from each other, so the test above can tell orders apart.
    func testOraclesDistinguishOrders() {
        let xs = inputs(p: 5, n: 1000)
        let native = oracle(.native, xs)
        for algorithm in [AllReduceAlgorithm.ring, .halvingDoubling, .tree] {
            XCTAssertNotEqual(oracle(algorithm, xs).map(\.bitPattern), native.map(\.bitPattern), "\(algorithm)")
        }
    }

    /// Float32 at a large odd size against a Float64 naive sum.
    func testFloat32LargeOddSize() throws {
        let p = 3, n = 1_000_003
        let xs: [[Float]] = (0..<p).map { r in
            (0..<n).map { i -> Float in
                let wave: Double = sin(Double(i &* 7 &+ r &* 13 &+ 1))
                return Float(wave * Double(1 + (i + r) % 5))
            }
        }
        var exact = [Double](repeating: 0, count: n), mag = exact
        for r in 0..<p { for i in 0..<n { exact[i] += Double(xs[r][i]); mag[i] += abs(Double(xs[r][i])) } }
        for algorithm in AllReduceAlgorithm.allCases {
            let got = try onRanks(p) { g -> [Float] in
                var v = xs[g.rank]
                try v.withUnsafeMutableBufferPointer { try g.allReduce($0, options: CollectiveOptions(algorithm: algorithm)) }
                return v
            }
            for r in 0..<p {
                var bad = -1
                for i in 0..<n where abs(Double(got[r][i]) - exact[i]) > 2e-7 * Double(p) * mag[i] { bad = i; break }
                XCTAssertEqual(bad, -1, "\(algorithm) rank \(r): first element beyond the bound")
                XCTAssertTrue(got[r] == got[0], "\(algorithm): rank \(r) differs from rank 0")
            }
        }
    }

    /// max, min, product, average and int32/int64 sums on small sizes, every algorithm.
    func testOtherOpsAndIntegerTypes() throws {
        for p in [1, 2, 3, 4, 5] {
            for n in [0, 1, 3, 7, 13] {
                for algorithm in AllReduceAlgorithm.allCases {
                    let opts = CollectiveOptions(algorithm: algorithm, chunkBytes: 8)
                    let got = try onRanks(p) { g -> [[Double]] in
                        let r = g.rank
                        var mx = (0..<n).map { Double(($0 * 5 + r * 3) % 11) - 5 }
                        var mn = mx, av = mx
                        var pr = (0..<n).map { Double(($0 + r) % 3 + 1) }
                        var i32 = (0..<n).map { Int32($0 * 100 + r) }
                        var i64 = (0..<n).map { Int64($0) << 33 + Int64(r) }
                        try mx.withUnsafeMutableBufferPointer { try g.allReduce($0, op: .max, options: opts) }
                        try mn.withUnsafeMutableBufferPointer { try g.allReduce($0, op: .min, options: opts) }
                        try av.withUnsafeMutableBufferPointer { try g.allReduce($0, op: .average, options: opts) }
                        try pr.withUnsafeMutableBufferPointer { try g.allReduce($0, op: .product, options: opts) }
                        try i32.withUnsafeMutableBufferPointer { try g.allReduce(CollectiveBuffer($0), options: opts) }
                        try i64.withUnsafeMutableBufferPointer { try g.allReduce(CollectiveBuffer($0), options: opts) }
                        return [mx, mn, av, pr, i32.map(Double.init), i64.map(Double.init)]
                    }
                    let ranks = 0..<p
                    for i in 0..<n {
                        let vals = ranks.map { r in Double((i * 5 + r * 3) % 11) - 5 }
                        let what = "\(algorithm) p=\(p) n=\(n) i=\(i)"
                        for r in ranks {
                            XCTAssertEqual(got[r][0][i], vals.max()!, "max \(what)")
                            XCTAssertEqual(got[r][1][i], vals.min()!, "min \(what)")
                            XCTAssertEqual(got[r][2][i], vals.reduce(0, +) / Double(p), accuracy: 1e-12, "average \(what)")
                            XCTAssertEqual(got[r][3][i], ranks.reduce(1.0) { $0 * Double((i + $1) % 3 + 1) }, "product \(what)")
                            XCTAssertEqual(got[r][4][i], Double(ranks.reduce(0) { $0 + i * 100 + $1 }), "int32 \(what)")
                            XCTAssertEqual(got[r][5][i], Double(ranks.reduce(Int64(0)) { $0 + Int64(i) << 33 + Int64($1) }), "int64 \(what)")
                        }
                    }
                }
            }
        }
    }

    /// Tensor conveniences: in place, and async without touching the input value.
    func testTensorAllReduce() throws {
        let got = try onRanks(3) { g -> [[Float]] in
            var t = try Tensor((0..<6).map { Float($0 + 10 * g.rank) }, shape: [2, 3])
            let shared = t
            try g.allReduce(&t, options: .ring)
            let work = g.allReduceAsync(shared, op: .average, options: CollectiveOptions(algorithm: .tree))
            let avg = try work.wait()
            return [t.scalars(as: Float.self), shared.scalars(as: Float.self), avg.scalars(as: Float.self), t.shape.map(Float.init)]
        }
        for r in 0..<3 {
            XCTAssertEqual(got[r][0], (0..<6).map { Float(3 * $0 + 30) })
            XCTAssertEqual(got[r][1], (0..<6).map { Float($0 + 10 * r) }, "the shared copy keeps its values")
            XCTAssertEqual(got[r][2], (0..<6).map { Float($0 + 10) })
            XCTAssertEqual(got[r][3], [2, 3])
        }
    }

    /// Async ops complete in issue order: waiting on the last one implies the others are done.
    func testAsyncOpsCompleteInIssueOrder() throws {
        let got = try onRanks(4) { g -> [Bool] in
            let bufs = (0..<6).map { k in UnsafeMutableBufferPointer<Float>.allocate(capacity: 1000 + k) }
            defer { bufs.forEach { $0.deallocate() } }
            for (k, b) in bufs.enumerated() { for i in 0..<b.count { b[i] = Float(g.rank + i + k) } }
            let algs: [AllReduceAlgorithm] = [.ring, .tree, .halvingDoubling, .native, .ring, .tree]
            let works = zip(bufs, algs).map { g.allReduceAsync(CollectiveBuffer($0), op: .sum, options: CollectiveOptions(algorithm: $1)) }
            try works.last!.wait()
            var ok = works.map(\.isCompleted)
            for w in works.reversed() { try w.wait() }
            for (k, b) in bufs.enumerated() { ok.append((0..<b.count).allSatisfy { b[$0] == Float(6 + 4 * ($0 + k)) }) }
            return ok
        }
        for r in 0..<4 { XCTAssertEqual(got[r], Array(repeating: true, count: 12), "rank \(r)") }
    }
}
