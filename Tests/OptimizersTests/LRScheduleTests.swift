import XCTest
import Foundation
@testable import Optimizers

final class LRScheduleTests: XCTestCase {
    func testConstant() {
        let s = LRSchedule.constant(0.05)
        XCTAssertEqual(s(0), 0.05)
        XCTAssertEqual(s(1_000_000), 0.05)
        XCTAssertEqual(s(-3), 0.05)
    }

    func testStepDecayByHand() throws {
        let s = try LRSchedule.stepDecay(initial: 0.1, stepSize: 30, gamma: 0.1)
        XCTAssertEqual(s(0), 0.1)
        XCTAssertEqual(s(29), 0.1)
        XCTAssertEqual(s(30), 0.1 * 0.1, accuracy: 1e-18)
        XCTAssertEqual(s(59), 0.01, accuracy: 1e-17)
        XCTAssertEqual(s(60), 0.001, accuracy: 1e-17)
        XCTAssertEqual(s(95), 1e-4, accuracy: 1e-18)
        XCTAssertEqual(s(-5), 0.1)   // negative steps count as 0
    }

    func testCosineByHand() throws {
        let s = try LRSchedule.cosine(initial: 0.1, totalSteps: 100, final: 0.001)
        XCTAssertEqual(s(0), 0.1, accuracy: 1e-17)
        XCTAssertEqual(s(50), (0.1 + 0.001) / 2, accuracy: 1e-17)       // half way: the mean
        // A quarter of the way: final + (initial - final) * (1 + cos(pi/4)) / 2.
        XCTAssertEqual(s(25), 0.001 + 0.099 * (1 + 0.5.squareRoot()) / 2, accuracy: 1e-16)
        XCTAssertEqual(s(75), 0.001 + 0.099 * (1 - 0.5.squareRoot()) / 2, accuracy: 1e-16)
        XCTAssertEqual(s(100), 0.001)
        XCTAssertEqual(s(1000), 0.001)                                   // clamped after the end
        let zeroFinal = try LRSchedule.cosine(initial: 1, totalSteps: 10)
        XCTAssertEqual(zeroFinal(5), 0.5, accuracy: 1e-15)
        XCTAssertEqual(zeroFinal(10), 0)
    }

    func testLinearWarmupByHand() throws {
        let s = try LRSchedule.linearWarmup(steps: 4, then: try .stepDecay(initial: 0.8, stepSize: 2, gamma: 0.5))
        let expected = [0.2, 0.4, 0.6, 0.8, 0.8, 0.8, 0.4, 0.4, 0.2]
        for (k, want) in expected.enumerated() { XCTAssertEqual(s(k), want, accuracy: 1e-15, "step \(k)") }
        let none = try LRSchedule.linearWarmup(steps: 0, then: .constant(0.3))
        XCTAssertEqual(none(0), 0.3)
        XCTAssertTrue(s.description.hasPrefix("linearWarmup(steps: 4"))
    }

    func testOneCycleAtStartPeakAndEnd() throws {
        let s = try LRSchedule.oneCycle(maxLR: 0.1, totalSteps: 100, pctStart: 0.3, divFactor: 25, finalDivFactor: 1e4)
        XCTAssertEqual(s(0), 0.1 / 25, accuracy: 1e-17)
        XCTAssertEqual(s(29), 0.1, accuracy: 1e-17)                      // peak at pctStart * total - 1
        XCTAssertEqual(s(99), 0.1 / 25 / 1e4, accuracy: 1e-19)          // end
        XCTAssertEqual(s(200), 0.1 / 25 / 1e4, accuracy: 1e-19)         // clamped after the end
        // On the way up, pct = 14 / 29: start + (peak - start) * (1 - cos(pi * pct)) / 2.
        XCTAssertEqual(s(14), 0.004 + (0.1 - 0.004) / 2 * (1 - Foundation.cos(Double.pi * 14 / 29)), accuracy: 1e-16)
        // Half way down: step 29 + 35 = 64 has pct 0.5.
        XCTAssertEqual(s(64), (0.1 + 4e-7) / 2, accuracy: 1e-16)
        // Monotone up to the peak, then down.
        for i in 0..<29 { XCTAssertLessThan(s(i), s(i + 1)) }
        for i in 29..<99 { XCTAssertGreaterThan(s(i), s(i + 1)) }
    }

    func testBadScheduleArgumentsThrow() {
        XCTAssertThrowsError(try LRSchedule.stepDecay(initial: 0.1, stepSize: 0))
        XCTAssertThrowsError(try LRSchedule.stepDecay(initial: 0, stepSize: 10))
        XCTAssertThrowsError(try LRSchedule.stepDecay(initial: 0.1, stepSize: 10, gamma: 0))
        XCTAssertThrowsError(try LRSchedule.cosine(initial: 0.1, totalSteps: 0))
        XCTAssertThrowsError(try LRSchedule.cosine(initial: 0.1, totalSteps: 10, final: -1))
        XCTAssertThrowsError(try LRSchedule.cosine(initial: .nan, totalSteps: 10))
        XCTAssertThrowsError(try LRSchedule.linearWarmup(steps: -1, then: .constant(0.1)))
        XCTAssertThrowsError(try LRSchedule.oneCycle(maxLR: 0.1, totalSteps: 0))
        XCTAssertThrowsError(try LRSchedule.oneCycle(maxLR: 0.1, totalSteps: 10, pctStart: 1))
        XCTAssertThrowsError(try LRSchedule.oneCycle(maxLR: 0.1, totalSteps: 10, pctStart: 0))
        XCTAssertThrowsError(try LRSchedule.oneCycle(maxLR: -0.1, totalSteps: 10))
        XCTAssertThrowsError(try LRSchedule.oneCycle(maxLR: 0.1, totalSteps: 10, divFactor: 0))
        do {
            _ = try LRSchedule.cosine(initial: 0.1, totalSteps: -5)
            XCTFail("expected an error")
        } catch {
            XCTAssertEqual(error.description, "cosine: totalSteps -5: expected at least 1")
        }
    }
}
