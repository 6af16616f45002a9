import Foundation
import XCTest
@testable import TensorKernels

final class BlasTests: XCTestCase {
    /// C = A·B through `Float.gemm` against a naive triple loop (Double sums).
    func gemmError(m: Int, n: Int, k: Int, seed: UInt64) -> Double {
        var state = seed
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(state >> 40) % 2001 - 1000) / 1000
        }
        let a = (0..<(m * k)).map { _ in next() }, b = (0..<(k * n)).map { _ in next() }
        var c = [Float](repeating: .nan, count: m * n)
        let rowMajor = BlasOperand(transposed: false, leadingDimension: k)
        let rowMajorB = BlasOperand(transposed: false, leadingDimension: n)
        Float.gemm(m: m, n: n, k: k, alpha: 1, a: a, aOp: rowMajor, b: b, bOp: rowMajorB, beta: 0, c: &c, ldc: n)
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k { s += Double(a[i * k + p]) * Double(b[p * n + j]) }
                worst = max(worst, abs(s - Double(c[i * n + j])))
            }
        }
        return worst
    }

    /// Restarting OpenBLAS's thread pool with a short idle spin keeps the thread count and
    /// the results (a GEMM large enough for OpenBLAS to thread it, before and after), and
    /// records the value in the environment OpenBLAS reads.
    func testThreadTimeoutRestartKeepsThreadsAndResults() {
        let before = BlasInfo.threads
        XCTAssertLessThan(gemmError(m: 192, n: 160, k: 144, seed: 1), 1e-3)
        guard BlasInfo.setThreadTimeout(exponent: 4) else {
            // Not OpenBLAS's pthread build: nothing to check but that nothing changed.
            XCTAssertEqual(BlasInfo.threads, before)
            return
        }
        XCTAssertEqual(BlasInfo.threads, before, "the restart must keep OpenBLAS's thread count")
        XCTAssertEqual(ProcessInfo.processInfo.environment["OPENBLAS_THREAD_TIMEOUT"], "4")
        XCTAssertLessThan(gemmError(m: 192, n: 160, k: 144, seed: 2), 1e-3)
        XCTAssertTrue(BlasInfo.setThreadTimeout(exponent: 28), "restoring OpenBLAS's default")
        XCTAssertEqual(BlasInfo.threads, before)
        XCTAssertLessThan(gemmError(m: 64, n: 300, k: 77, seed: 3), 1e-3)
    }
}
