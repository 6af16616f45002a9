import Foundation
import XCTest
@testable import Collectives

/// Deterministic test data: rank `r`'s element `i`, with magnitudes spread over 7 decades
/// so that different summation orders give different Float64 bits.
func sample(rank r: Int, index i: Int) -> Double {
    sin(Double(i &* 7 &+ r &* 13 &+ 1)) * pow(10, Double((i + 2 * r) % 7 - 3))
}

func inputs(p: Int, n: Int) -> [[Double]] {
    (0..<p).map { r in (0..<n).map { sample(rank: r, index: $0) } }
}

/// Sum of `xs[order[0]][i] + xs[order[1]][i] + ...` left to right.
func orderedSum(_ xs: [[Double]], _ order: [Int], _ i: Int) -> Double {
    var acc = xs[order[0]][i]
    for r in order.dropFirst() { acc = acc + xs[r][i] }
    return acc
}

/// The documented reduction order of each algorithm, as a Float64 oracle.
func oracle(_ algorithm: AllReduceAlgorithm, _ xs: [[Double]]) -> [Double] {
    let p = xs.count, n = xs.first?.count ?? 0
    switch algorithm {
    case .native:
        return (0..<n).map { orderedSum(xs, Array(0..<p), $0) }
    case .ring:
        let offs = shardOffsets(shardCounts(total: n, parts: p))
        return (0..<n).map { i in
            let j = (offs.lastIndex { $0 <= i })!
            return orderedSum(xs, (0..<p).map { (j + $0) % p }, i)
        }
    case .halvingDoubling:
        var pp = 1
        while pp * 2 <= p { pp *= 2 }
        let rem = p - pp
        return (0..<n).map { i in
            var v = (0..<pp).map { a in a < rem ? xs[2 * a][i] + xs[2 * a + 1][i] : xs[a + rem][i] }
            var m = pp / 2
            while m >= 1 { for a in 0..<m { v[a] = v[a] + v[a + m] }; m /= 2 }
            return v[0]
        }
    case .tree:
        func t(_ r: Int, _ i: Int) -> Double {
            var acc = xs[r][i]
            if 2 * r + 1 < p { acc = acc + t(2 * r + 1, i) }
            if 2 * r + 2 < p { acc = acc + t(2 * r + 2, i) }
            return acc
        }
        return (0..<n).map { t(0, $0) }
    }
}

/// Runs `body` on `p` in-process ranks.
func onRanks<T: Sendable>(_ p: Int, timeout: Double = 20, _ body: @escaping @Sendable (InProcessGroup) throws -> T) throws -> [T] {
    try InProcessWorld.run(size: p, timeout: timeout, body)
}

/// Bitwise equality of two Double arrays (NaN-safe), with the first difference in the message.
func assertBitwise(_ a: [Double], _ b: [Double], _ what: @autoclosure () -> String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(what()): count", file: file, line: line)
    if let i = (0..<min(a.count, b.count)).first(where: { a[$0].bitPattern != b[$0].bitPattern }) {
        XCTFail("\(what()): element \(i): \(a[i]) != \(b[i])", file: file, line: line)
    }
}
