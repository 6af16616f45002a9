import XCTest
import TensorCore

final class RNGTests: XCTestCase {
    func testSameSeedSameNumbersDifferentSeedDifferentNumbers() {
        let a = Tensor.randn([100], generator: Generator(seed: 42)).doubles()
        let b = Tensor.randn([100], generator: Generator(seed: 42)).doubles()
        let c = Tensor.randn([100], generator: Generator(seed: 43)).doubles()
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
    }

    func testStreamIsPinned() {
        // Golden values from an independent Python implementation of SplitMix64 + xoshiro256**;
        // a change here changes every seeded run (checkpoints, loss curves).
        let g = Generator(seed: 0)
        let first = (0..<3).map { _ in g.nextUInt64() }
        let again = Generator(seed: 0)
        XCTAssertEqual(first, (0..<3).map { _ in again.nextUInt64() })
        XCTAssertEqual(first, RNGTests.goldenSeed0)
    }
    static let goldenSeed0: [UInt64] = [0x99EC_5F36_CB75_F2B4, 0xBF6E_1F78_4956_452A, 0x1A5F_849D_4933_E6E0]

    func testStateSaveAndRestoreReplaysTheStream() {
        let g = Generator(seed: 9)
        _ = Tensor.rand([7], generator: g)
        _ = Tensor.randn([3], generator: g)   // odd count leaves a spare normal in the state
        let saved = g.currentState
        let x = Tensor.randn([5], generator: g).doubles()
        g.currentState = saved
        XCTAssertEqual(Tensor.randn([5], generator: g).doubles(), x)
    }

    func testDistributionMoments() {
        let u = Tensor.rand([100_000], dtype: .float64, generator: Generator(seed: 1)).doubles()
        let mean = u.reduce(0, +) / Double(u.count)
        XCTAssertEqual(mean, 0.5, accuracy: 0.01)
        XCTAssertTrue(u.allSatisfy { $0 >= 0 && $0 < 1 })
        let z = Tensor.randn([100_000], mean: 2, std: 3, dtype: .float64, generator: Generator(seed: 2)).doubles()
        let zm = z.reduce(0, +) / Double(z.count)
        let zv = z.map { ($0 - zm) * ($0 - zm) }.reduce(0, +) / Double(z.count)
        XCTAssertEqual(zm, 2, accuracy: 0.05)
        XCTAssertEqual(zv.squareRoot(), 3, accuracy: 0.05)
    }

    func testPermutationAndBoundedIntegers() {
        let g = Generator(seed: 5)
        let p = g.permutation(50)
        XCTAssertEqual(p.sorted(), Array(0..<50))
        XCTAssertNotEqual(p, Array(0..<50))
        let r = Tensor.randint(3, 7, [1000], generator: g).doubles()
        XCTAssertEqual(Set(r), [3, 4, 5, 6])
    }
}
