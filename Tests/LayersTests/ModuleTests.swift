import XCTest
import TensorCore
import Layers

/// A small model with nested children, an optional bias and a module list.
final class TinyNet: Module {
    let features = Sequential(Conv2d(1, 2, kernel: 3, padding: 1), ReLU(), MaxPool2d(kernel: 2))
    let head: Linear
    let extraBlocks: [Module] = [Linear(2, 2, bias: false), Identity()]
    override init() {
        head = Linear(2 * 2 * 2, 3)
        super.init()
    }
    override func forward(_ x: Tensor) -> Tensor { head(features(x).flattened(startDim: 1)) }
}

final class ModuleTests: XCTestCase {
    func testNamesFollowPyTorchConventions() {
        let net = TinyNet()
        XCTAssertEqual(net.namedParameters().map(\.0),
                       ["features.0.weight", "features.0.bias", "head.weight", "head.bias", "extra_blocks.0.weight"])
        XCTAssertEqual(net.parameterCount, 2 * 9 + 2 + 8 * 3 + 3 + 4)
        XCTAssertEqual(snakeCase("runningMean"), "running_mean")
        XCTAssertEqual(snakeCase("num_batches"), "num_batches")
    }

    func testTrainEvalPropagatesAndDropoutObeysIt() {
        let drop = Dropout(0.5, generator: Generator(seed: 1))
        let net = Sequential(Linear(4, 4), drop)
        let x = Tensor.ones([2, 4])
        net.eval()
        XCTAssertFalse(drop.isTraining)
        let a = net(x).doubles(), b = net(x).doubles()
        XCTAssertEqual(a, b)
        net.train()
        XCTAssertTrue(drop.isTraining)
        let y = drop(Tensor.ones([1000])).doubles()
        XCTAssertTrue(y.allSatisfy { $0 == 0 || $0 == 2 })
        XCTAssertEqual(Double(y.filter { $0 == 0 }.count) / 1000, 0.5, accuracy: 0.06)
    }

    func testLinearMatchesHandComputation() throws {
        let l = Linear(3, 2)
        try l.loadStateDict(["weight": Tensor([1.0, 2, 3, -1, 0, 1] as [Float], shape: [2, 3]),
                             "bias": Tensor([0.5, -0.5] as [Float], shape: [2])])
        let y = l(try Tensor([1, 1, 2] as [Float], shape: [1, 3]))
        let expected: [Double] = [9.5, 0.5]  // [1+2+6+0.5, -1+0+2-0.5]
        XCTAssertEqual(y.doubles(), expected)
    }

    func testDefaultInitBoundsFollowPyTorch() {
        let conv = Conv2d(4, 8, kernel: 3, generator: Generator(seed: 0))
        let bound: Double = 1 / 6.0  // 1 / sqrt(fanIn = 4 * 3 * 3)
        let w: [Double] = conv.weight.value.doubles()
        XCTAssertTrue(w.allSatisfy { abs($0) <= bound })
        let largest: Double = w.map { abs($0) }.max()!
        XCTAssertGreaterThan(largest, 0.9 * bound)
        let k = Init.kaimingNormal([256, 512], generator: Generator(seed: 2)).doubles()
        let std = (k.map { $0 * $0 }.reduce(0, +) / Double(k.count)).squareRoot()
        XCTAssertEqual(std, (2.0 / 512).squareRoot(), accuracy: 0.002)
        let xb = Init.xavierUniform([30, 70], generator: Generator(seed: 3)).doubles()
        XCTAssertTrue(xb.allSatisfy { abs($0) <= (6.0 / 100).squareRoot() })
    }

    func testStateDictRoundTripAndErrors() throws {
        let a = TinyNet(), b = TinyNet()
        let dict = Dictionary(uniqueKeysWithValues: a.stateDict())
        try b.loadStateDict(dict)
        let x = Tensor.randn([2, 1, 4, 4], generator: Generator(seed: 4))
        XCTAssertEqual(a(x).doubles(), b(x).doubles())
        var wrong = dict
        wrong["head.weight"] = Tensor.zeros([4, 8])
        XCTAssertThrowsError(try b.loadStateDict(wrong)) { e in
            XCTAssertEqual("\(e)", "checkpoint layer 'head.weight': expected shape [3, 8], found [4, 8]")
        }
        var missing = dict
        missing.removeValue(forKey: "features.0.bias")
        XCTAssertThrowsError(try b.loadStateDict(missing)) { e in
            XCTAssertEqual("\(e)", "checkpoint is missing 'features.0.bias' (expected shape [2])")
        }
        var extra = dict
        extra["head.scale"] = Tensor.ones([1])
        XCTAssertThrowsError(try b.loadStateDict(extra)) { e in
            XCTAssertEqual("\(e)", "checkpoint has unexpected keys [\"head.scale\"] (not in this model)")
        }
        // A rejected load changes nothing.
        XCTAssertEqual(a(x).doubles(), b(x).doubles())
        try b.loadStateDict(extra, strict: false)
    }

    func testLoadKeepsLeavesSoHooksSurvive() throws {
        let l = Linear(2, 1)
        let before = l.weight.value.gradNode.map(ObjectIdentifier.init)
        try l.loadStateDict(["weight": Tensor.ones([1, 2]), "bias": Tensor.zeros([1])])
        XCTAssertEqual(l.weight.value.gradNode.map(ObjectIdentifier.init), before)
        XCTAssertEqual(l.weight.value.doubles(), [1, 1])
        XCTAssertEqual(Memory.stats().current(.parameters) > 0, true)
    }

    func testAdaptiveAvgPoolUnevenBins() {
        // 5 -> 3 bins: [0,2), [1,4), [3,5) as PyTorch.
        let x = try! Tensor([0, 1, 2, 3, 4] as [Float], shape: [1, 1, 1, 5])
        let y = AdaptiveAvgPool2d((1, 3))(x)
        XCTAssertEqual(y.doubles(), [0.5, 2, 3.5])
    }

    func testGradientsFlowToEveryParameter() {
        let net = TinyNet()
        let x = Tensor.randn([3, 1, 4, 4], generator: Generator(seed: 5))
        net(x).sum().backward()
        for (name, p) in net.namedParameters() where !name.hasPrefix("extra") {
            XCTAssertNotNil(p.grad, name)
        }
        net.zeroGrad()
        XCTAssertNil(net.head.weight.grad)
    }
}
