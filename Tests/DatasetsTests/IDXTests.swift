import XCTest
import Foundation
@testable import Datasets

final class IDXTests: XCTestCase {
    var dir: String!

    override func setUp() {
        dir = NSTemporaryDirectory() + "loom-idx-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testRoundTripThroughGzip() throws {
        let data: [UInt8] = (0..<24).map { UInt8($0 * 3) }
        let path = dir + "/a.gz"
        try GzipReader.writeAll(IDX.encode(dims: [2, 3, 4], data: data), to: path)
        let arr = try IDX.read(path)
        XCTAssertEqual(arr.dims, [2, 3, 4])
        XCTAssertEqual(arr.data, data)
    }

    func testPlainFilesAreReadToo() throws {
        let path = dir + "/plain"
        try Data(IDX.encode(dims: [3], data: [7, 8, 9])).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try IDX.read(path).data, [7, 8, 9])
    }

    func testTruncatedDataNamesFileAndSizes() {
        var bytes = IDX.encode(dims: [10, 28, 28], data: [UInt8](repeating: 1, count: 7840))
        bytes.removeLast(40)
        XCTAssertThrowsError(try IDX.parse(bytes, path: "x.idx")) { e in
            XCTAssertEqual("\(e)", "x.idx: truncated data: dimensions [10, 28, 28] need 7840 bytes, found 7800")
        }
    }

    func testBadMagicAndTypeAndShortHeader() {
        XCTAssertThrowsError(try IDX.parse([1, 0, 8, 1, 0, 0, 0, 0], path: "m")) { e in
            XCTAssertEqual("\(e)", "m: bad magic: expected 0x0000xxxx, found 0x01000801")
        }
        XCTAssertThrowsError(try IDX.parse([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0], path: "t")) { e in
            XCTAssertEqual("\(e)", "t: unsupported element type 0x0d: expected 0x08 (unsigned byte)")
        }
        XCTAssertThrowsError(try IDX.parse([0, 0, 8, 3, 0, 0], path: "h")) { e in
            XCTAssertEqual("\(e)", "h: truncated header: expected 16 bytes for 3 dimensions, found 6")
        }
    }

    func testCorruptGzipIsAnError() throws {
        let path = dir + "/c.gz"
        try GzipReader.writeAll([UInt8](repeating: 5, count: 100_000), to: path)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        for i in 20..<min(60, bytes.count) { bytes[i] ^= 0xFF }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try GzipReader.readAll(path)) { e in
            XCTAssertTrue("\(e)".hasPrefix(path + ": corrupt compressed data"), "\(e)")
        }
    }

    func testMissingFileIsNamed() {
        XCTAssertThrowsError(try FashionMNIST(directory: dir, split: .train)) { e in
            XCTAssertTrue("\(e)".contains("train-images-idx3-ubyte.gz: file not found"), "\(e)")
        }
    }

    func testFashionMNISTFromFixtureFiles() throws {
        let n = 5
        let pixels: [UInt8] = (0..<(n * 784)).map { UInt8($0 % 256) }
        try GzipReader.writeAll(IDX.encode(dims: [n, 28, 28], data: pixels), to: dir + "/t10k-images-idx3-ubyte.gz")
        try GzipReader.writeAll(IDX.encode(dims: [n], data: [0, 9, 3, 3, 1]), to: dir + "/t10k-labels-idx1-ubyte.gz")
        let ds = try FashionMNIST(directory: dir, split: .test)
        XCTAssertEqual(ds.count, 5)
        var buf = [Float](repeating: 0, count: 784)
        let label = buf.withUnsafeMutableBufferPointer { ds.sample(1, into: $0) }
        XCTAssertEqual(label, 9)
        XCTAssertEqual(buf[0], Float(784 % 256) / 255, accuracy: 1e-7)
        // Labels out of range are rejected with the index.
        try GzipReader.writeAll(IDX.encode(dims: [n], data: [0, 12, 3, 3, 1]), to: dir + "/t10k-labels-idx1-ubyte.gz")
        XCTAssertThrowsError(try FashionMNIST(directory: dir, split: .test)) { e in
            XCTAssertTrue("\(e)".hasSuffix("label 12 at index 1: expected 0...9"), "\(e)")
        }
    }

    func testRealFashionMNISTWhenInstalled() throws {
        guard FileManager.default.fileExists(atPath: FashionMNIST.defaultDirectory) else {
            throw XCTSkip("dataset-fashion-mnist is not installed")
        }
        let test = try FashionMNIST(split: .test)
        XCTAssertEqual(test.count, 10_000)
        var hist = [Int](repeating: 0, count: 10)
        for l in test.labels { hist[Int(l)] += 1 }
        XCTAssertEqual(hist, [Int](repeating: 1000, count: 10))
    }
}
