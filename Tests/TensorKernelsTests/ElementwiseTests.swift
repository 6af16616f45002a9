import XCTest
import TensorKernels

final class ElementwiseTests: XCTestCase {
    func testTiledTransposeCopyMatchesNaive() {
        for (rows, cols) in [(67, 45), (32, 32), (33, 100), (5, 40)] {
            // Source stored [cols, rows] row-major, read as its transpose [rows, cols].
            let src = (0..<(rows * cols)).map { Float($0) }
            var dst = [Float](repeating: -1, count: rows * cols)
            src.withUnsafeBufferPointer { s in
                dst.withUnsafeMutableBufferPointer { d in
                    copyStrided(s.baseAddress!, srcStrides: [1, rows], srcOffset: 0,
                                d.baseAddress!, dstStrides: [cols, 1], dstOffset: 0, shape: [rows, cols])
                }
            }
            for i in 0..<rows { for j in 0..<cols { XCTAssertEqual(dst[i * cols + j], src[j * rows + i], "\(rows)x\(cols) [\(i), \(j)]") } }
        }
    }

    func testParallelBroadcastZipMatchesNaive() {
        let rows = 300, cols = 700
        let a = (0..<(rows * cols)).map { Float($0 % 97) }
        let b = (0..<cols).map { Float($0) * 0.5 }
        var out = [Float](repeating: 0, count: rows * cols)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { d in
                    zipStrided(pa.baseAddress!, aStrides: [cols, 1], aOffset: 0, pb.baseAddress!, bStrides: [0, 1], bOffset: 0,
                               shape: [rows, cols], d.baseAddress!, parallel: true) { $0 - $1 }
                }
            }
        }
        for i in 0..<rows { for j in 0..<cols { XCTAssertEqual(out[i * cols + j], a[i * cols + j] - b[j]) } }
    }

    func testParallelContiguousZipMatchesNaive() {
        let n = (1 << 18) + 3
        let a = (0..<n).map { Float($0 % 13) }, b = (0..<n).map { Float($0 % 7) }
        var out = [Float](repeating: 0, count: n)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { d in
                    zipStrided(pa.baseAddress!, aStrides: [1], aOffset: 0, pb.baseAddress!, bStrides: [1], bOffset: 0,
                               shape: [n], d.baseAddress!, parallel: true) { $0 * $1 }
                }
            }
        }
        XCTAssertEqual(out, zip(a, b).map { $0 * $1 })
    }
}
