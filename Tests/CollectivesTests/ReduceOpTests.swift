import XCTest
@testable import Collectives

final class ReduceOpTests: XCTestCase {
    func testNames() { XCTAssertEqual(ReduceOp(rawValue: "sum"), .sum) }
}
