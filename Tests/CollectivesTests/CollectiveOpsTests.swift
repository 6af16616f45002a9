import XCTest
import TensorCore
@testable import Collectives

final class CollectiveOpsTests: XCTestCase {
    func testShardCounts() {
        XCTAssertEqual(shardCounts(total: 10, parts: 4), [3, 3, 2, 2])
        XCTAssertEqual(shardCounts(total: 2, parts: 3), [1, 1, 0])
        XCTAssertEqual(shardCounts(total: 0, parts: 2), [0, 0])
        XCTAssertEqual(shardOffsets([3, 0, 2]), [0, 3, 3])
    }

    /// Uneven reduce-scatter (zero blocks included) against a naive sum, native and ring.
    func testReduceScatterUneven() throws {
        for p in 1...5 {
            for counts in [shardCounts(total: 7, parts: p), (0..<p).map { $0 == 1 ? 0 : 2 * $0 + 1 }, Array(repeating: 0, count: p)] {
                let total = counts.reduce(0, +)
                let xs = inputs(p: p, n: total)
                let offs = shardOffsets(counts)
                for algorithm in [AllReduceAlgorithm.native, .ring] {
                    let got = try onRanks(p) { g -> [Double] in
                        var send = xs[g.rank]
                        var recv = [Double](repeating: -1, count: counts[g.rank])
                        try send.withUnsafeMutableBufferPointer { s in
                            try recv.withUnsafeMutableBufferPointer { r in
                                try g.reduceScatter(send: CollectiveBuffer(s), recv: CollectiveBuffer(r), counts: counts,
                                                    options: CollectiveOptions(algorithm: algorithm, chunkBytes: 16))
                            }
                        }
                        XCTAssertEqual(send, xs[g.rank], "send buffer unchanged")
                        return recv
                    }
                    for r in 0..<p {
                        let expect = (0..<counts[r]).map { k in (0..<p).reduce(0.0) { $0 + xs[$1][offs[r] + k] } }
                        XCTAssertEqual(got[r].count, expect.count)
                        for k in 0..<expect.count {
                            XCTAssertEqual(got[r][k], expect[k], accuracy: 1e-12 * (abs(expect[k]) + 1), "\(algorithm) p=\(p) counts=\(counts) rank \(r)")
                        }
                    }
                }
            }
        }
    }

    /// Uneven all-gather, native and ring, exact.
    func testAllGatherUneven() throws {
        for p in 1...5 {
            let counts = (0..<p).map { ($0 * 3 + 1) % 4 }
            let offs = shardOffsets(counts)
            for algorithm in [AllReduceAlgorithm.native, .ring] {
                let got = try onRanks(p) { g -> [Int64] in
                    var send = (0..<counts[g.rank]).map { Int64(g.rank * 100 + $0) }
                    var recv = [Int64](repeating: -1, count: counts.reduce(0, +))
                    try send.withUnsafeMutableBufferPointer { s in
                        try recv.withUnsafeMutableBufferPointer { r in
                            try g.allGather(send: CollectiveBuffer(s), recv: CollectiveBuffer(r), counts: counts,
                                            options: CollectiveOptions(algorithm: algorithm, chunkBytes: 8))
                        }
                    }
                    return recv
                }
                var expect = [Int64]()
                for r in 0..<p { expect += (0..<counts[r]).map { Int64(r * 100 + $0) } }
                XCTAssertEqual(offs.count, p)
                for r in 0..<p { XCTAssertEqual(got[r], expect, "\(algorithm) p=\(p) rank \(r)") }
            }
        }
    }

    func testBroadcastSendRecvBarrier() throws {
        let got = try onRanks(4) { g -> [Float] in
            var b = [Float](repeating: Float(g.rank), count: 5)
            try b.withUnsafeMutableBufferPointer { try g.broadcast(CollectiveBuffer($0), root: 2) }
            var t = Tensor.full([2, 2], Double(g.rank))
            try g.broadcast(&t, root: 3)
            // A ring of sendRecv exchanges, then plain send/recv from odd to even ranks.
            var out = [Float](repeating: Float(g.rank), count: 3), inn = [Float](repeating: -1, count: 3)
            try out.withUnsafeMutableBufferPointer { o in
                try inn.withUnsafeMutableBufferPointer { i in
                    try g.sendRecv(send: CollectiveBuffer(o), to: (g.rank + 1) % 4, recv: CollectiveBuffer(i), from: (g.rank + 3) % 4, tag: 9)
                }
            }
            var p2p = [Float](repeating: Float(g.rank * 10), count: 2)
            try p2p.withUnsafeMutableBufferPointer { b in
                if g.rank % 2 == 1 { try g.send(CollectiveBuffer(b), to: g.rank - 1, tag: 3) } else { try g.recv(CollectiveBuffer(b), from: g.rank + 1, tag: 3) }
            }
            try g.barrier()
            return b + t.scalars(as: Float.self) + inn + p2p
        }
        for r in 0..<4 {
            let src = Float((r + 3) % 4), odd = Float((r % 2 == 1 ? r : r + 1) * 10)
            XCTAssertEqual(got[r], [2, 2, 2, 2, 2, 3, 3, 3, 3, src, src, src, odd, odd], "rank \(r)")
        }
    }

    /// A missing peer is an error naming rank, peer, op and step within the timeout.
    func testMissingPeerTimesOut() throws {
        let start = Date()
        let got = try onRanks(2, timeout: 0.5) { g -> String in
            guard g.rank == 0 else { return "" }
            g.step = 17
            var v = [Float](repeating: 1, count: 8)
            do {
                try v.withUnsafeMutableBufferPointer { try g.allReduce($0, options: .ring) }
                return "no error"
            } catch let e as CollectiveError {
                guard case let .timeout(rank, peer, _, _, step, _) = e, rank == 0, peer == 1, step == 17 else { return "wrong error \(e)" }
                // The group is poisoned afterwards.
                do { try g.barrier(); return "barrier passed" } catch let e2 as CollectiveError {
                    guard case .poisoned = e2 else { return "wrong second error \(e2)" }
                }
                return e.description
            }
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        XCTAssertEqual(got[0], "rank 0, step 17: allReduce(ring) (op #0) timed out after 0.5 s waiting for rank 1")
    }

    func testArgumentErrors() throws {
        let got = try onRanks(2) { g -> [String] in
            var v = [Float](repeating: 1, count: 4), w = [Float](repeating: 0, count: 3)
            var msgs = [String]()
            func capture(_ f: () throws -> Void) { do { try f(); msgs.append("ok") } catch { msgs.append("\(error)") } }
            v.withUnsafeMutableBufferPointer { vb in
                w.withUnsafeMutableBufferPointer { wb in
                    capture { try g.reduceScatter(send: CollectiveBuffer(vb), recv: CollectiveBuffer(wb), counts: [2, 2]) }
                    capture { try g.allReduce(vb, options: CollectiveOptions(algorithm: .tree, compression: .float16)) }
                }
            }
            return msgs
        }
        XCTAssertEqual(got[0][0], "rank 0: reduceScatter(native): send has 4 and recv 3 elements, expected 4 and 2 for counts [2, 2]")
        XCTAssertEqual(got[1][1], "rank 1: allReduce(tree): group unusable after an earlier failure: rank 1: reduceScatter(native): send has 4 and recv 3 elements, expected 4 and 2 for counts [2, 2]")
    }

    func testUnsupportedCombination() throws {
        let got = try onRanks(1) { g -> String in
            var v = [Float](repeating: 1, count: 4)
            do { try v.withUnsafeMutableBufferPointer { try g.allReduce($0, options: CollectiveOptions(algorithm: .tree, compression: .float16)) }; return "ok" } catch { return "\(error)" }
        }
        XCTAssertEqual(got[0], "rank 0: allReduce(tree): unsupported: compression float16 needs algorithm ring, not tree")
    }
}

final class ShutdownTests: XCTestCase {
    /// An op issued after shutdown fails at once instead of waiting forever.
    func testOpAfterShutdownFails() {
        let g = InProcessWorld(size: 1).makeGroups(timeout: 1)[0]
        g.shutdown()
        XCTAssertThrowsError(try g.barrier()) {
            XCTAssertEqual("\($0)", "rank 0: barrier: group unusable after an earlier failure: the group was shut down")
        }
    }
}
