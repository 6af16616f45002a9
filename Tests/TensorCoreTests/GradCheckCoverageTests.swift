import XCTest
import TensorCore

/// Every differentiable op in `OpRegistry` must have at least one finite-difference check.
///
/// Checks are grouped by area (one file each); this test runs them all and fails when
/// an op in the registry has none.
final class GradCheckCoverageTests: XCTestCase {
    static var allChecks: [String: [GradCheckCase]] {
        var all: [String: [GradCheckCase]] = [:]
        for group in [GradChecks.core, GradChecks.views, GradChecks.elementwise, GradChecks.reductions,
                      GradChecks.linalg, GradChecks.indexing] {
            for (k, v) in group { all[k, default: []].append(contentsOf: v) }
        }
        return all
    }

    func testEveryDifferentiableOpHasAGradientCheck() {
        let checks = Self.allChecks
        let missing = OpRegistry.differentiableOps.filter { (checks[$0] ?? []).isEmpty }
        XCTAssertEqual(missing, [], "differentiable ops without a finite-difference gradient check: \(missing)")
    }

    func testAllGradientChecks() {
        for (name, cases) in Self.allChecks.sorted(by: { $0.key < $1.key }) {
            for (i, c) in cases.enumerated() { assertGradientsMatch("\(name)#\(i)", c) }
        }
    }
}

/// Namespace for per-area gradient checks (see GradChecks+*.swift).
enum GradChecks {}
