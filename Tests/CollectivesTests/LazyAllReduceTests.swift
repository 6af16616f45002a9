import XCTest
@testable import Collectives

final class LazyAllReduceTests: XCTestCase {
    /// Fused buckets give exactly the per-tensor native results (small integers: exact sums),
    /// including empty tensors and a tensor larger than a bucket.
    func testFusedEqualsOneByOne() throws {
        let sizes = [3, 0, 17, 1, 40, 5, 0, 9]
        for options in [CollectiveOptions.native, .ring] {
            let got = try onRanks(3) { g -> [[Float]] in
                let bufs = sizes.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: $0) }
                defer { bufs.forEach { $0.deallocate() } }
                for (k, b) in bufs.enumerated() { for i in 0..<b.count { b[i] = Float(k * 100 + i + g.rank) } }
                let fuser = LazyAllReduce(group: g, bucketBytes: 64, options: options)
                bufs.forEach(fuser.add)
                try fuser.flush()
                return bufs.map { Array($0) }
            }
            for r in 0..<3 {
                for (k, n) in sizes.enumerated() {
                    XCTAssertEqual(got[r][k], (0..<n).map { Float(3 * (k * 100 + $0) + 3) }, "\(options.algorithm) rank \(r) tensor \(k)")
                }
            }
        }
    }

    func testRecvSizeMismatchIsNamed() throws {
        let got = try onRanks(2) { g -> String in
            var a = [Float](repeating: 1, count: 4)
            do {
                try a.withUnsafeMutableBufferPointer { b in
                    if g.rank == 0 { try g.send(CollectiveBuffer(b), to: 1, tag: 2) } else {
                        try g.recv(CollectiveBuffer(UnsafeMutableBufferPointer(rebasing: b[0..<3])), from: 0, tag: 2)
                    }
                }
                return "ok"
            } catch { return "\(error)" }
        }
        XCTAssertEqual(got, ["ok", "rank 1: recv(from 0, tag 2): expected 12 bytes from rank 0, received 16"])
    }
}
