import XCTest
import Foundation
import TensorCore
import TensorKernels

final class SafeTensorsTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    func testReadsAFileWrittenByPyTorch() throws {
        let (t, meta) = try SafeTensors.load(Self.fixtures.appendingPathComponent("tiny.safetensors").path)
        XCTAssertEqual(meta, ["producer": "torch"])
        XCTAssertEqual(t["features.0.weight"]!.shape, [2, 3])
        XCTAssertEqual(t["features.0.weight"]!.doubles(), [-0.5, -0.25, 0, 0.25, 0.5, 0.75])
        XCTAssertEqual(t["half"]!.dtype, .float16)
        XCTAssertEqual(t["half"]!.doubles(), [1.5, -2.25, 65504])
        XCTAssertEqual(t["bhalf"]!.dtype, .bfloat16)
        XCTAssertEqual(t["bhalf"]!.doubles()[0...1], [1, -3])
        XCTAssertEqual(t["bhalf"]!.doubles()[2], Double(BFloat16(1e30).floatValue))
        XCTAssertEqual(t["labels"]!.scalars(as: Int64.self), [0, 9, 3, -1])
        XCTAssertEqual(t["mask"]!.scalars(as: Bool.self), [true, false, true])
        XCTAssertEqual(t["scalar"]!.shape, [])
        XCTAssertEqual(t["scalar"]!.item(), 3.25)
    }

    func testRoundTripEveryDTypeAndNonContiguousInput() throws {
        let base = try Tensor([1.0, -2.0, 3.5, 4.0, 0.0, -0.5] as [Double], shape: [2, 3])
        var dict: [String: Tensor] = [:]
        for dt in DType.allCases where dt != .bool { dict["t.\(dt)"] = base.to(dt) }
        dict["t.bool"] = base.gt(0)
        dict["transposed"] = base.to(.float32).transposed(0, 1)
        dict["empty"] = Tensor.zeros([0, 4])
        let data = SafeTensors.encode(dict, metadata: ["epoch": "3"])
        let headerLength = data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual((8 + headerLength) % 8, 0, "tensor data must start 8-byte aligned")
        let (back, meta) = try SafeTensors.decode(data)
        XCTAssertEqual(meta["epoch"], "3")
        XCTAssertEqual(Set(back.keys), Set(dict.keys))
        for (k, v) in dict {
            XCTAssertEqual(back[k]!.dtype, v.dtype, k)
            XCTAssertEqual(back[k]!.shape, v.shape, k)
            XCTAssertEqual(back[k]!.doubles(), v.doubles(), k)
        }
    }

    func testBadFilesNameTheProblem() {
        XCTAssertThrowsError(try SafeTensors.decode(Data([1, 2, 3]), path: "a")) { e in
            XCTAssertEqual("\(e)", "a: truncated: expected an 8-byte header length, found 3 bytes")
        }
        var good = SafeTensors.encode(["w": Tensor.ones([4])])
        good.removeLast(4)
        XCTAssertThrowsError(try SafeTensors.decode(good, path: "b")) { e in
            XCTAssertEqual("\(e)", "b: tensor 'w': data ends at byte 16 but the data section has 12 bytes (truncated file?)")
        }
        let header = #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}}"#
        var bad = Data()
        var n = UInt64(header.utf8.count).littleEndian
        withUnsafeBytes(of: &n) { bad.append(contentsOf: $0) }
        bad.append(header.data(using: .utf8)!)
        bad.append(Data(count: 16))
        XCTAssertThrowsError(try SafeTensors.decode(bad, path: "c")) { e in
            XCTAssertEqual("\(e)", "c: tensor 'w': data_offsets [0, 8] span 8 bytes, expected 16 for F32 [2, 2]")
        }
        XCTAssertThrowsError(try SafeTensors.load("/nonexistent/x.safetensors")) { e in
            XCTAssertEqual("\(e)", "/nonexistent/x.safetensors: file not found")
        }
    }

    func testAtomicSaveReplacesAndLeavesNoTemporaryFile() throws {
        let dir = NSTemporaryDirectory() + "loom-st-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.safetensors"
        try SafeTensors.save(["a": Tensor.ones([2])], to: path)
        try SafeTensors.save(["a": Tensor.zeros([3])], to: path)
        XCTAssertEqual(try SafeTensors.load(path).tensors["a"]!.doubles(), [0, 0, 0])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["m.safetensors"])
        // A save that cannot happen throws and leaves the old file intact.
        XCTAssertThrowsError(try SafeTensors.save(["a": Tensor.ones([1])], to: dir + "/missing-dir/m.safetensors"))
        XCTAssertEqual(try SafeTensors.load(path).tensors["a"]!.count, 3)
    }
}
