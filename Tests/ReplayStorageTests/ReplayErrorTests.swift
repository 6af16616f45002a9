import XCTest
@testable import ReplayStorage

final class ReplayErrorTests: XCTestCase {
    func testDescription() { XCTAssertEqual(ReplayError("x").description, "x") }
}
