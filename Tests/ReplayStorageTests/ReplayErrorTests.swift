import XCTest
@testable import ReplayStorage

final class ReplayErrorTests: XCTestCase {
    func testDescriptionIsTheMessage() {
        let e = ReplayError(.timeout, "table 'q': sample timed out")
        XCTAssertEqual(e.description, "table 'q': sample timed out")
        XCTAssertEqual(e.kind, .timeout)
        XCTAssertNotEqual(e, ReplayError(.cancelled, "table 'q': sample timed out"))
    }
}
