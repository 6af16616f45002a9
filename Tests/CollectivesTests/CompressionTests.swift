import XCTest
@testable import Collectives

final class CompressionTests: XCTestCase {
    /// fp16/bf16 on the wire with Float32 accumulation: every hop rounds a partial sum
    /// once (relative error u = 2^-11 or 2^-8; fp16 subnormals below 6.1e-5 add up to 2^-25
    /// absolute), so |result - exact| <= p·(u·Σ|x| + floor) (+ Float32 slack).
    func testHalfWireDeviationBound() throws {
        for (compression, u, absFloor) in [(WireCompression.float16, 0x1p-11, 0x1p-25), (.bfloat16, 0x1p-8, 0.0)] {
            for p in [2, 3, 5] {
                for n in [1, 7, 1001] {
                    let xs = (0..<p).map { r in (0..<n).map { Float(sample(rank: r, index: $0) / 10) } }
                    let got = try onRanks(p) { g -> [Float] in
                        var v = xs[g.rank]
                        try v.withUnsafeMutableBufferPointer {
                            try g.allReduce($0, options: CollectiveOptions(algorithm: .ring, compression: compression, chunkBytes: 64))
                        }
                        return v
                    }
                    var maxRel = 0.0
                    for i in 0..<n {
                        let exact = (0..<p).reduce(0.0) { $0 + Double(xs[$1][i]) }
                        let mag = (0..<p).reduce(0.0) { $0 + abs(Double(xs[$1][i])) }
                        let err = abs(Double(got[0][i]) - exact)
                        XCTAssertLessThanOrEqual(err, Double(p) * (u * mag + absFloor) + 1e-6 * mag, "\(compression) p=\(p) n=\(n) i=\(i)")
                        maxRel = max(maxRel, err / max(mag, 1e-30))
                    }
                    for r in 1..<p { XCTAssertEqual(got[r], got[0], "\(compression) p=\(p): rank \(r) differs") }
                    // The wire really is 16-bit: some element deviates from the float32 sum.
                    if n == 1001 { XCTAssertGreaterThan(maxRel, 1e-6, "\(compression) p=\(p)") }
                }
            }
        }
    }

    func testCompressorSplitsExactly() {
        let c = ChunkTopKCompressor(count: 10, chunkSize: 3, topChunks: 2)
        XCTAssertEqual(c.chunkCount, 4)
        let g: [Float] = [1, 1, 1, 5, 0, 0, 0, 0, 0, -9]
        let sent = g.withUnsafeBufferPointer { c.compress($0) }
        XCTAssertEqual(sent.chunkIndices, [1, 3])   // norms² 3, 25, 0, 81
        XCTAssertEqual(sent.values, [5, 0, 0, -9, 0, 0])
        XCTAssertEqual(c.residual, [1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
        // residual + sent == input, elementwise and exactly.
        XCTAssertEqual(zip(sent.dense(), c.residual).map { $0 + $1 }, g)
        // Next step: the residual is added before selection.
        let g2: [Float] = [1, 0, 0, 0, 0, 0, 0, 0, 1, 0]
        let sent2 = g2.withUnsafeBufferPointer { c.compress($0) }
        XCTAssertEqual(sent2.chunkIndices, [0, 2])  // [2,1,1] norm² 6; chunk 2 [0,0,1] 1; others 0
        XCTAssertEqual(zip(sent2.dense(), c.residual).map { $0 + $1 }, [2, 1, 1, 0, 0, 0, 0, 0, 1, 0])
    }

    /// Error feedback: Σ sent = Σ inputs − residual, and the residual stays bounded, so
    /// the average of sent updates converges to the average input.
    func testErrorFeedbackConverges() {
        let n = 50, c = ChunkTopKCompressor(count: n, chunkSize: 5, topChunks: 2)
        var sumIn = [Double](repeating: 0, count: n), sumSent = [Double](repeating: 0, count: n)
        let steps = 400
        for s in 0..<steps {
            let g: [Float] = (0..<n).map { i -> Float in
                let wave: Double = sin(Double(i * 7 + s * 3))
                return Float(wave + 0.1 * Double(i % 4))
            }
            let sent = g.withUnsafeBufferPointer { c.compress($0) }.dense()
            for i in 0..<n { sumIn[i] += Double(g[i]); sumSent[i] += Double(sent[i]) }
            if s == 9 || s == steps - 1 {
                for i in 0..<n { XCTAssertEqual(sumSent[i] + Double(c.residual[i]), sumIn[i], accuracy: 1e-3 * (1 + abs(sumIn[i]))) }
            }
        }
        // The residual stays bounded (every chunk is sent once its norm grows), so the
        // average sent update converges to the average input at rate O(1/steps).
        XCTAssertLessThan(c.residual.map { abs($0) }.max()!, 20)
        let worst = (0..<n).map { abs(sumSent[$0] - sumIn[$0]) / Double(steps) }.max()!
        XCTAssertLessThan(worst, 0.05, "average sent update tracks the average input")
    }

    /// Sparse allreduce across ranks: the result is the sum of every rank's sent chunks.
    func testSparseAllReduce() throws {
        let p = 3, n = 23
        let got = try onRanks(p) { g -> [[Float]] in
            let c = ChunkTopKCompressor(count: n, chunkSize: 4, topChunks: 2)
            var grad = (0..<n).map { Float(sample(rank: g.rank, index: $0)) }
            let input = grad
            try grad.withUnsafeMutableBufferPointer { try g.sparseAllReduce($0, compressor: c) }
            // What this rank sent = input − residual.
            return [grad, zip(input, c.residual).map { $0 - $1 }]
        }
        for i in 0..<n {
            let expect = (0..<p).reduce(Float(0)) { $0 + got[$1][1][i] }
            for r in 0..<p { XCTAssertEqual(got[r][0][i], expect, accuracy: 1e-6, "rank \(r) i=\(i)") }
        }
        XCTAssertEqual(got[0][1].filter { $0 != 0 }.count, 8, "two chunks of four sent")
    }
}
