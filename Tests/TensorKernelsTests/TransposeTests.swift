import XCTest
import TensorKernels

/// copyStrided on transposing layouts (Transpose.swift) against a naive strided loop:
/// every element width (1, 2, 4, 8 bytes), ragged and tiny extents, leading batch dims,
/// offsets and padded (non-dense) source and destination rows, one and two threads.
final class TransposeTests: XCTestCase {
    /// Naive copy: `dst[off_d(idx)] = src[off_s(idx)]` for every multi-index of `shape`.
    static func naiveCopy<T>(_ src: [T], srcStrides: [Int], srcOffset: Int, into dst: inout [T], dstStrides: [Int], dstOffset: Int, shape: [Int]) {
        for idx in ReduceFixture.multiIndices(shape) {
            var so = srcOffset, dOff = dstOffset
            for d in 0..<shape.count { so += idx[d] * srcStrides[d]; dOff += idx[d] * dstStrides[d] }
            dst[dOff] = src[so]
        }
    }

    /// Copies a view of `storageShape` with dims permuted by `perm` into a destination
    /// with row padding `dstPad` (extra elements per innermost row) and offset `dstOffset`.
    static func check<T: FixedWidthInteger>(_: T.Type, storageShape: [Int], perm: [Int], srcOffset: Int = 0, dstPad: Int = 0,
                                            dstOffset: Int = 0, threads: Int, file: StaticString = #filePath, line: UInt = #line) {
        let n = elementCount(storageShape)
        let src = (0..<(n + srcOffset + 1)).map { T(truncatingIfNeeded: $0 &* 2_654_435_761 &+ 17) }
        let base = contiguousStrides(storageShape)
        let shape = perm.map { storageShape[$0] }, srcStrides = perm.map { base[$0] }
        // Destination: row-major with padded inner rows.
        var dstStrides = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            dstStrides[d] = acc
            acc *= d == shape.count - 1 ? shape[d] + dstPad : shape[d]
        }
        let size = dstOffset + acc + 1
        var got = [T](repeating: 0, count: size), want = [T](repeating: 0, count: size)
        naiveCopy(src, srcStrides: srcStrides, srcOffset: srcOffset, into: &want, dstStrides: dstStrides, dstOffset: dstOffset, shape: shape)
        ReduceParallelTests.withThreads(threads) {
            src.withUnsafeBufferPointer { s in
                got.withUnsafeMutableBufferPointer { d in
                    copyStrided(s.baseAddress!, srcStrides: srcStrides, srcOffset: srcOffset,
                                d.baseAddress!, dstStrides: dstStrides, dstOffset: dstOffset, shape: shape)
                }
            }
        }
        XCTAssertEqual(got, want, "\(T.self) storage \(storageShape) perm \(perm) srcOffset \(srcOffset) dstPad \(dstPad) threads \(threads)",
                       file: file, line: line)
    }

    func testTransposeAllWidthsAndRaggedShapes() {
        let shapes: [[Int]] = [[8, 8], [9, 8], [8, 9], [7, 300], [300, 7], [17, 23], [64, 64], [65, 130], [129, 127], [257, 131], [1, 50], [50, 1], [0, 9]]
        for shape in shapes {
            for threads in [1, 2] {
                Self.check(UInt8.self, storageShape: shape, perm: [1, 0], threads: threads)
                Self.check(UInt16.self, storageShape: shape, perm: [1, 0], threads: threads)
                Self.check(UInt32.self, storageShape: shape, perm: [1, 0], threads: threads)
                Self.check(UInt64.self, storageShape: shape, perm: [1, 0], threads: threads)
            }
        }
    }

    func testTransposeWithOffsetsPaddingAndBatchDims() {
        for threads in [1, 2] {
            Self.check(UInt32.self, storageShape: [131, 67], perm: [1, 0], srcOffset: 5, dstPad: 3, dstOffset: 7, threads: threads)
            Self.check(UInt64.self, storageShape: [67, 131], perm: [1, 0], srcOffset: 1, dstPad: 1, dstOffset: 2, threads: threads)
            // Batched: [B, M, N] -> [B, N, M]; leading dims permuted too.
            Self.check(UInt32.self, storageShape: [3, 45, 37], perm: [0, 2, 1], threads: threads)
            Self.check(UInt32.self, storageShape: [3, 45, 37], perm: [2, 0, 1], threads: threads)
            Self.check(UInt64.self, storageShape: [4, 33, 20], perm: [2, 1, 0], threads: threads)
            Self.check(UInt16.self, storageShape: [2, 3, 40, 24], perm: [1, 0, 3, 2], threads: threads)
        }
    }

    func testLargeTransposeUsesThreadsAndMatches() {
        // ≥ 2 · minChunk elements, so the row bands are split among threads.
        for threads in [1, 2] {
            Self.check(UInt32.self, storageShape: [515, 509], perm: [1, 0], threads: threads)
            Self.check(UInt64.self, storageShape: [2, 300, 260], perm: [0, 2, 1], threads: threads)
        }
    }
}
