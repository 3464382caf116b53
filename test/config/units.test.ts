// Mesos' duration and byte-size text forms, both ways.
import { expect, test } from "bun:test";
import { formatBytes, formatDuration, parseBytes, parseDuration } from "../../src/config/units.ts";

test("durations parse in every stout unit", () => {
  expect(parseDuration("30secs")).toBe(30e9);
  expect(parseDuration("1.5mins")).toBe(90e9);
  expect(parseDuration("100ms")).toBe(100e6);
  expect(parseDuration("7us")).toBe(7000);
  expect(parseDuration("5ns")).toBe(5);
  expect(parseDuration("2hrs")).toBe(7200e9);
  expect(parseDuration("1days")).toBe(86400e9);
  expect(parseDuration("1weeks")).toBe(604800e9);
  expect(() => parseDuration("30")).toThrow(/unknown unit ''/);
  expect(() => parseDuration("30s")).toThrow(/unknown unit 's'/);
  expect(() => parseDuration("fast")).toThrow(/is not a duration/);
});

test("durations print in the largest unit not above them, as stout does", () => {
  expect(formatDuration(30e9)).toBe("30secs");
  expect(formatDuration(60e9)).toBe("1mins");
  expect(formatDuration(90e9)).toBe("1.5mins");
  expect(formatDuration(300e9)).toBe("5mins");
  expect(formatDuration(500)).toBe("500ns");
  expect(formatDuration(1500)).toBe("1.5us");
  expect(formatDuration(604800e9)).toBe("1weeks");
  expect(formatDuration(3600e9)).toBe("1hrs");
});

test("byte sizes parse binary multiples and print without losing information", () => {
  expect(parseBytes("64GB")).toBe(64 * 1024 ** 3);
  expect(parseBytes("1.5KB")).toBe(1536);
  expect(parseBytes("10B")).toBe(10);
  expect(() => parseBytes("10GiB")).toThrow(/unknown unit 'GiB'/);
  expect(formatBytes(64 * 1024 ** 3)).toBe("64GB");
  expect(formatBytes(1536)).toBe("1536B");
  expect(formatBytes(2048)).toBe("2KB");
  expect(formatBytes(0)).toBe("0B");
});
