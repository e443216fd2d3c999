import { cmdline, domainId, memorySize, poweroff, println, startInfoPage, startInfoValid } from "../../sdk/index";

export function start(): void {
  println("hello from domain " + domainId().toString());
  println("cmdline: " + cmdline());
  println("memory: " + memorySize().toString() + " bytes");
  println("start info page: " + startInfoPage().toString() + (startInfoValid() ? " (valid)" : " (BAD MAGIC)"));
  poweroff();
}
