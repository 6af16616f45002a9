import XCTest
import Foundation
import TensorKernels

final class VectorMathTests: XCTestCase {
    /// Sweeps inputs (a dense grid plus specials) and compares with Float64 libm.
    func check(_ name: String, _ f: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void,
               _ reference: (Double) -> Double, range: ClosedRange<Float>, maxUlp: Float) {
        var xs: [Float] = []
        let steps = 20_001
        for i in 0..<steps { xs.append(range.lowerBound + (range.upperBound - range.lowerBound) * Float(i) / Float(steps - 1)) }
        xs += [0, -0.0, 1e-30, -1e-30, 0.29999, 0.3, 0.30001, -0.3, 88, -87, 89, -88, -104, 100, -100,
               .infinity, -.infinity, .nan, .leastNonzeroMagnitude, 1e-7]
        // Count not a multiple of 8, so the scalar tail runs too.
        xs.append(0.5)
        var out = [Float](repeating: 0, count: xs.count)
        xs.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { d in f(s.baseAddress!, d.baseAddress!, xs.count) } }
        for (x, y) in zip(xs, out) {
            let exact = Float(reference(Double(x)))
            if exact.isNaN { XCTAssertTrue(y.isNaN, "\(name)(\(x)) = \(y), expected NaN"); continue }
            if exact.isInfinite || exact == 0 { XCTAssertEqual(y, exact, "\(name)(\(x))"); continue }
            let ulps = abs(y - exact) / exact.ulp
            XCTAssertLessThanOrEqual(ulps, maxUlp, "\(name)(\(x)) = \(y), expected \(exact)")
        }
    }

    func testExp() {
        check("exp", { vectorExp($0, $1, count: $2) }, { Foundation.exp($0) }, range: -87...88, maxUlp: 2)
    }

    func testTanh() {
        check("tanh", { vectorTanh($0, $1, count: $2) }, { Foundation.tanh($0) }, range: -12...12, maxUlp: 4)
    }

    func testSigmoid() {
        check("sigmoid", { vectorSigmoid($0, $1, count: $2) }, { 1 / (1 + Foundation.exp(-$0)) }, range: -80...80, maxUlp: 4)
    }
}
