import XCTest
@testable import DataParallel

final class DataParallelErrorTests: XCTestCase {
    func testDescription() { XCTAssertEqual(DataParallelError("x").description, "x") }
}
