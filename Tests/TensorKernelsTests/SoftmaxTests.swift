import XCTest
import TensorKernels

/// softmaxAlongDim against a naive per-line loop (random and edge shapes, strided inputs).
final class SoftmaxTests: XCTestCase {
    typealias F = ReduceFixture

    static func run(_ v: F.View, dim: Int, log: Bool) -> [Double] {
        var out = [Double](repeating: .nan, count: elementCount(v.shape))
        v.buffer.withUnsafeBufferPointer { b in
            out.withUnsafeMutableBufferPointer { o in
                softmaxAlongDim(b.baseAddress!, shape: v.shape, strides: v.strides, offset: v.offset, dim: dim, o.baseAddress!, log: log)
            }
        }
        return out
    }

    func testSoftmaxMatchesNaive() {
        var rng = F.Rand(11)
        for shape in F.shapes(&rng) where !shape.isEmpty {
            for layout in F.Layout.allCases {
                let v = F.view(shape, layout, &rng)
                for dim in 0..<shape.count {
                    for log in [false, true] {
                        let out = Self.run(v, dim: dim, log: log)
                        for (linear, idx) in F.multiIndices(shape).enumerated() {
                            var denom = 0.0
                            for i in 0..<shape[dim] {
                                var full = idx
                                full[dim] = i
                                denom += Foundation.exp(v.at(full))
                            }
                            let ref = log ? v.at(idx) - Foundation.log(denom) : Foundation.exp(v.at(idx)) / denom
                            F.assertClose(out[linear], ref, tol: 1e-12, "softmax \(shape) \(layout) dim \(dim) log \(log) at \(idx)")
                        }
                    }
                }
            }
        }
    }

    func testLargeLogitsStayFinite() {
        let xs: [Float] = [1000, 1001, -1000, -1001]
        var out = [Float](repeating: 0, count: 4), logOut = [Float](repeating: 0, count: 4)
        xs.withUnsafeBufferPointer { b in
            softmaxAlongDim(b.baseAddress!, shape: [2, 2], strides: [2, 1], offset: 0, dim: 1, &out, log: false)
            softmaxAlongDim(b.baseAddress!, shape: [2, 2], strides: [2, 1], offset: 0, dim: 1, &logOut, log: true)
        }
        let a = Float(1 / (1 + Foundation.exp(1.0)))  // e^1000 / (e^1000 + e^1001)
        XCTAssertEqual(out[0], a, accuracy: 1e-6)
        XCTAssertEqual(out[1], 1 - a, accuracy: 1e-6)
        XCTAssertEqual(out[2], 1 - a, accuracy: 1e-6)
        XCTAssertEqual(logOut[1], -Float(Foundation.log(1 + Foundation.exp(-1.0))), accuracy: 1e-5)
        XCTAssertTrue(logOut.allSatisfy { $0.isFinite })
    }

    func testNaNAndInfinityLines() {
        let xs: [Double] = [1, .nan, 2, -.infinity, -.infinity, -.infinity, 0, -.infinity, 1]
        var out = [Double](repeating: 0, count: 9)
        xs.withUnsafeBufferPointer { b in
            softmaxAlongDim(b.baseAddress!, shape: [3, 3], strides: [3, 1], offset: 0, dim: 1, &out, log: false)
        }
        XCTAssertTrue(out[0..<3].allSatisfy(\.isNaN), "a NaN poisons its line")
        XCTAssertTrue(out[3..<6].allSatisfy(\.isNaN), "a line of -inf is NaN (as PyTorch)")
        XCTAssertEqual(out[7], 0)  // exp(-inf) = 0
        XCTAssertEqual(out[6] + out[8], 1, accuracy: 1e-15)
    }

    func testLargeInputSplitAcrossThreadsMatchesNaive() {
        // Enough lines that parallelChunks splits the work.
        var rng = F.Rand(12)
        let shape = [4096, 33]
        let v = F.view(shape, .permuted, &rng)
        let out = Self.run(v, dim: 1, log: false)
        for r in stride(from: 0, to: 4096, by: 97) {
            var denom = 0.0
            for i in 0..<33 { denom += Foundation.exp(v.at([r, i])) }
            for i in 0..<33 { F.assertClose(out[r * 33 + i], Foundation.exp(v.at([r, i])) / denom, tol: 1e-12, "row \(r) col \(i)") }
        }
    }
}
