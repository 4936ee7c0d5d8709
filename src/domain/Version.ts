// The version every program prints for --version; test/domain/Version.test.ts keeps it equal to package.json's.
export const VERSION = "0.1.0"
