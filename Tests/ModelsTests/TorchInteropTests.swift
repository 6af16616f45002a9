import Foundation
import XCTest
import Layers
import Models
import TensorCore

/// Checkpoints move between PyTorch and Loom: PyTorch-produced fixtures (written by
/// Fixtures/make_fixtures.py with torch 2.13 CPU; torch is not needed here) load into the zoo
/// models and give torch's logits, and Loom's state dicts serialise to exactly the keys, shapes
/// and dtypes of torch's `state_dict()`, which is what `load_state_dict(strict=True)` checks.
///
/// Fixtures: lenet5.safetensors and resnet20.safetensors are real `safetensors.torch.save_file`
/// checkpoints (trained 10 SGD steps, so BatchNorm running statistics are not the defaults);
/// alexnet-small and convnet-bn (4 MB and 3.3 MB in float32) use synthetic weights computed
/// bit-identically by a formula on both sides (`syntheticValue`); io.safetensors holds the input
/// batch, torch's eval-mode logits and torch's state-dict manifests.
///
/// Tolerance: max |loom − torch| ≤ 1e-4 · max(1, max |torch logit|). Both compute in float32 but
/// sum in different orders (im2col + OpenBLAS vs oneDNN), so logits differ by a few ulps of their
/// magnitude (measured: 3e-8 to 1.2e-4 absolute, at most 5e-6 of the logit scale, the largest for
/// convnet-bn on raw pixels where BN subtracts large means); a layout or semantics error moves
/// them by O(logit scale).
final class TorchInteropTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let tolerance = 1e-4

    static func fixturePath(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    /// io.safetensors: inputs "x" (normalised) and "x_raw" (pixels 0...255) [3, 1, 28, 28], torch's
    /// logits "logits.<model>" and "logits_raw.<model>" [3, 10], manifests in the metadata.
    /// (With raw pixels the activations are large enough that LocalResponseNorm's constants
    /// move alexnet-small's logits by ~1e-2, far above the tolerance.)
    static let io: (tensors: [String: Tensor], metadata: [String: String]) = {
        try! SafeTensors.load(fixturePath("io.safetensors"))
    }()

    /// One entry of a safetensors header as torch sees it: dtype code and shape.
    struct Entry: Equatable, CustomStringConvertible {
        let dtype: String
        let shape: [Int]
        var description: String { "\(dtype) \(shape)" }
    }

    /// Parses the JSON header of safetensors bytes (name -> dtype code, shape), without Loom's decoder.
    static func header(_ data: Data) throws -> [String: Entry] {
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as? [String: Any])
        var out: [String: Entry] = [:]
        for (k, v) in json where k != "__metadata__" {
            let e = try XCTUnwrap(v as? [String: Any])
            out[k] = Entry(dtype: try XCTUnwrap(e["dtype"] as? String), shape: try XCTUnwrap(e["shape"] as? [Int]))
        }
        return out
    }

    /// torch's `state_dict()` of `model` as recorded by make_fixtures.py: [(key, entry)] in torch's order.
    static func torchManifest(_ model: String) throws -> [(String, Entry)] {
        let text = try XCTUnwrap(io.metadata["state_dict.\(model)"], "io.safetensors has no manifest for \(model)")
        let rows = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[Any]])
        return try rows.map { row in
            (try XCTUnwrap(row[0] as? String), Entry(dtype: try XCTUnwrap(row[1] as? String), shape: try XCTUnwrap(row[2] as? [Int])))
        }
    }

    /// The synthetic value of a state-dict entry; mirrors `synthetic_value` in make_fixtures.py.
    ///
    /// h = ((e · 2654435761 + index · 40503 + 12345) mod 2³²) >> 16 for element e, u = h / 65536;
    /// num_batches_tracked = 3; running_var = 0.5 + u; running_mean = (u − 0.5) / 2; rank-1 weight
    /// = 0.75 + u / 2; rank-1 bias = (u − 0.5) / 4; other weights (u − 0.5) · 4 / 2^k with 4^k ≥ fan_in.
    /// Every value has at most 17 significant bits, so it is exact in Float32 on both sides.
    static func syntheticValue(index: Int, key: String, shape: [Int]) -> Tensor {
        if key.hasSuffix("num_batches_tracked") { return Tensor(scalar: Int64(3)) }
        let n = shape.reduce(1, *)
        var k = 0
        if shape.count >= 2 {
            let fanIn = n / shape[0]
            while 1 << (2 * k) < fanIn { k += 1 }
        }
        let weightScale = 4 / Double(1 << k)
        var values = [Float](repeating: 0, count: n)
        for e in 0..<n {
            let h = ((UInt64(e) &* 2_654_435_761 &+ UInt64(index) &* 40503 &+ 12345) & 0xFFFF_FFFF) >> 16
            let u = Double(h) / 65536
            let v: Double
            if key.hasSuffix("running_var") {
                v = 0.5 + u
            } else if key.hasSuffix("running_mean") {
                v = (u - 0.5) / 2
            } else if shape.count == 1 && key.hasSuffix("weight") {
                v = 0.75 + u / 2
            } else if shape.count == 1 && key.hasSuffix("bias") {
                v = (u - 0.5) / 4
            } else {
                v = (u - 0.5) * weightScale
            }
            values[e] = Float(v)
        }
        return try! Tensor(values, shape: shape)
    }

    /// The fixture's (input, torch logits prefix) pairs.
    static let batches = [("x", "logits"), ("x_raw", "logits_raw")]

    /// Loom's logits for a fixture input, in eval mode.
    static func loomLogits(_ model: Module, input: String) -> Tensor {
        model.eval()
        return noGrad { model(io.tensors[input]!) }
    }

    /// Asserts that `model` gives torch's logits of `name` on every fixture input.
    static func assertTorchLogits(_ model: Module, _ name: String, file: StaticString = #filePath, line: UInt = #line) {
        for (input, logits) in batches {
            assertLogitsMatch(loomLogits(model, input: input), "\(logits).\(name)", file: file, line: line)
        }
    }

    /// Asserts the tolerance above and returns max |loom − torch|.
    @discardableResult
    static func assertLogitsMatch(_ loom: Tensor, _ model: String, file: StaticString = #filePath, line: UInt = #line) -> Double {
        let torch = io.tensors[model]!
        XCTAssertEqual(loom.shape, torch.shape, model, file: file, line: line)
        let a = loom.doubles(), b = torch.doubles()
        let diff = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        let scale = max(1, b.map(abs).max() ?? 0)
        XCTAssertLessThanOrEqual(diff, tolerance * scale, "\(model): max |loom - torch| = \(diff), logit scale \(scale)",
                                 file: file, line: line)
        XCTAssertEqual(loom.argmax(dim: 1).doubles(), torch.argmax(dim: 1).doubles(), model, file: file, line: line)
        return diff
    }

    func testFixturesRecordTheirProducer() throws {
        XCTAssertTrue(Self.io.metadata["torch_version"]?.hasPrefix("2.") ?? false, "\(Self.io.metadata)")
        XCTAssertEqual(Self.io.tensors["x"]?.shape, [3, 1, 28, 28])
        XCTAssertEqual(Self.io.tensors["x_raw"]?.doubles().max(), 255)
        for name in ["lenet5", "resnet20"] {
            let (_, meta) = try SafeTensors.load(Self.fixturePath("\(name).safetensors"))
            XCTAssertEqual(meta["torch_version"], Self.io.metadata["torch_version"], name)
            XCTAssertEqual(meta["model"], name)
        }
    }

    // MARK: torch -> Loom

    /// Real `save_file` checkpoints load strictly into the zoo models and give torch's logits.
    func testTorchCheckpointsLoadAndGiveTorchLogits() throws {
        for name in ["lenet5", "resnet20"] {
            let (weights, _) = try SafeTensors.load(Self.fixturePath("\(name).safetensors"))
            let model = try Zoo.make(name)
            try model.loadStateDict(weights, strict: true)
            Self.assertTorchLogits(model, name)
        }
    }

    /// The running statistics and the Int64 counter come through unchanged.
    func testTorchBatchNormBuffersLoadExactly() throws {
        let (weights, _) = try SafeTensors.load(Self.fixturePath("resnet20.safetensors"))
        let model = try Zoo.make("resnet20") as! ResNet20
        try model.loadStateDict(weights)
        XCTAssertEqual(model.bn1.numBatchesTracked!.value.dtype, .int64)
        XCTAssertEqual(model.bn1.numBatchesTracked!.value.scalars(as: Int64.self), [10])
        XCTAssertEqual(model.bn1.runningVar!.value.doubles(), weights["bn1.running_var"]!.doubles())
        XCTAssertNotEqual(model.bn1.runningVar!.value.doubles(), [Double](repeating: 1, count: 16), "stats are trained, not defaults")
        let down = model.layer3.layers[0] as! BasicBlock
        XCTAssertEqual((down.downsample!.layers[1] as! BatchNorm2d).runningMean!.value.doubles(),
                       weights["layer3.0.downsample.1.running_mean"]!.doubles())
    }

    /// alexnet-small (LRN, grouped convs, overlapping pools) and convnet-bn (BatchNorm2d and
    /// BatchNorm1d in eval mode) with the synthetic weights give torch's logits.
    func testSyntheticWeightsGiveTorchLogits() throws {
        for name in ["alexnet-small", "convnet-bn"] {
            let model = try Zoo.make(name)
            let shapes = Dictionary(uniqueKeysWithValues: model.stateDict().map { ($0.0, $0.1.shape) })
            var dict: [String: Tensor] = [:]
            for (i, key) in shapes.keys.sorted().enumerated() {
                dict[key] = Self.syntheticValue(index: i, key: key, shape: shapes[key]!)
            }
            XCTAssertEqual(Set(dict.keys), Set(try Self.torchManifest(name).map(\.0)), name)
            try model.loadStateDict(dict, strict: true)
            Self.assertTorchLogits(model, name)
        }
    }

    /// The synthetic formula is the one the fixture used: a few values computed by hand.
    func testSyntheticFormula() {
        // index 0, e = 0: h = 12345 >> 16 = 0, u = 0; e = 1: (2654435761 + 12345) mod 2^32 = 2654448106, >> 16 = 40503.
        let w = Self.syntheticValue(index: 0, key: "features.0.weight", shape: [2, 1, 2, 2]).doubles()  // fan_in 4: k = 1
        XCTAssertEqual(w[0], -0.5 * 2)
        XCTAssertEqual(w[1], (40503.0 / 65536 - 0.5) * 2)
        XCTAssertEqual(Self.syntheticValue(index: 0, key: "bn.running_var", shape: [1]).doubles(), [0.5])
        XCTAssertEqual(Self.syntheticValue(index: 5, key: "bn.num_batches_tracked", shape: []).scalars(as: Int64.self), [3])
    }

    // MARK: Loom -> torch

    /// Loom's `stateDict()`, written with SafeTensors.encode, has exactly the keys, shapes and
    /// dtypes of torch's `state_dict()` (so `load_state_dict(strict=True)` accepts the file and
    /// copies without conversion) — for all four models, BN buffers and num_batches_tracked included.
    func testLoomStateDictHasTorchKeysShapesAndDTypes() throws {
        for name in ["lenet5", "resnet20", "alexnet-small", "convnet-bn"] {
            let torch = try Self.torchManifest(name)
            let model = try Zoo.make(name)
            let written = try Self.header(SafeTensors.encode(Dictionary(uniqueKeysWithValues: model.stateDict())))
            XCTAssertEqual(written.count, torch.count, name)
            for (key, entry) in torch {
                XCTAssertEqual(written[key], entry, "\(name): \(key)")
            }
            XCTAssertEqual(Set(written.keys), Set(torch.map(\.0)), name)
        }
    }

    /// The real torch files agree with the manifests (so the manifests describe what save_file writes).
    func testTorchFilesMatchTheirManifests() throws {
        for name in ["lenet5", "resnet20"] {
            let file = try Self.header(try Data(contentsOf: URL(fileURLWithPath: Self.fixturePath("\(name).safetensors"))))
            let torch = try Self.torchManifest(name)
            XCTAssertEqual(file, Dictionary(uniqueKeysWithValues: torch), name)
        }
    }

    /// torch -> Loom -> torch: the checkpoint Loom writes after loading torch's is byte-identical
    /// tensor by tensor (same header entries, same data), and Loom reads it back to the same logits.
    func testRoundTripIsByteExact() throws {
        for name in ["lenet5", "resnet20"] {
            let path = Self.fixturePath("\(name).safetensors")
            let original = try Data(contentsOf: URL(fileURLWithPath: path))
            let (weights, _) = try SafeTensors.decode(original, path: path)
            let model = try Zoo.make(name)
            try model.loadStateDict(weights)
            let written = SafeTensors.encode(Dictionary(uniqueKeysWithValues: model.stateDict()))
            XCTAssertEqual(try Self.header(written), try Self.header(original), name)
            let (back, _) = try SafeTensors.decode(written)
            for (key, t) in weights {
                let same = t.withRawBytes { a in back[key]!.withRawBytes { b in a.elementsEqual(b) } }
                XCTAssertTrue(same, "\(name): \(key) changed bytes on the way through Loom")
            }
            let reloaded = try Zoo.make(name)
            try reloaded.loadStateDict(back)
            Self.assertTorchLogits(reloaded, name)
        }
    }

    /// A torch checkpoint for the wrong model is rejected with a message naming the key.
    func testWrongModelIsRejectedByName() throws {
        let (weights, _) = try SafeTensors.load(Self.fixturePath("lenet5.safetensors"))
        XCTAssertThrowsError(try Zoo.make("resnet20").loadStateDict(weights)) { e in
            XCTAssertTrue("\(e)".contains("missing 'bn1.bias'"), "\(e)")
        }
    }
}
