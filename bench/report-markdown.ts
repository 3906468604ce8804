/** Renders `REPORT.md` from the JSON results of a folder (work in progress). */
export async function writeReport(_dir: string): Promise<void> {}
