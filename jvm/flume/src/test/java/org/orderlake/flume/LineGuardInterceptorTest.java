package org.orderlake.flume;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import org.apache.flume.Event;
import org.apache.flume.event.EventBuilder;
import org.junit.Test;

public class LineGuardInterceptorTest {
  private final LineGuardInterceptor guard =
      new LineGuardInterceptor(100, "tmall.rejects", "topic", Set.of("tmall.user_profiles"));

  private static Event line(byte[] body) {
    Map<String, String> headers = new HashMap<>();
    headers.put("topic", "tmall.user_actions");
    headers.put("file", "/spool/host-1/actions.log");
    return EventBuilder.withBody(body, headers);
  }

  @Test
  public void passesValidLinesUntouched() {
    Event e = line("{\"user_id\": 1}".getBytes(StandardCharsets.UTF_8));
    assertSame(e, guard.intercept(e));
    assertEquals("tmall.user_actions", e.getHeaders().get("topic"));
  }

  @Test
  public void routesOversizeLinesToRejectsWithTheirHead() {
    byte[] big = new byte[500];
    Arrays.fill(big, (byte) 'x');
    Event out = guard.intercept(line(big));
    assertEquals("tmall.rejects", out.getHeaders().get("topic"));
    JsonObject env = JsonParser.parseString(new String(out.getBody(), StandardCharsets.UTF_8))
        .getAsJsonObject();
    assertEquals("oversize", env.get("reason").getAsString());
    assertEquals(500, env.get("bytes").getAsInt());
    assertEquals("tmall.user_actions", env.get("topic").getAsString());
    assertTrue(env.get("head").getAsString().startsWith("xxx"));
  }

  @Test
  public void routesInvalidUtf8WithTheWholeLineInBase64() {
    byte[] bad = {'{', (byte) 0xC3, (byte) 0x28, '}'};
    Event out = guard.intercept(line(bad));
    JsonObject env = JsonParser.parseString(new String(out.getBody(), StandardCharsets.UTF_8))
        .getAsJsonObject();
    assertEquals("invalid_utf8", env.get("reason").getAsString());
    assertEquals("e8MofQ==", env.get("value_base64").getAsString());
  }

  @Test
  public void routesKeylessLinesForCompactedTopicsToRejects() {
    Event keyless = line("{\"age_range\": 3}".getBytes(StandardCharsets.UTF_8));
    keyless.getHeaders().put("topic", "tmall.user_profiles");
    Event out = guard.intercept(keyless);
    assertEquals("tmall.rejects", out.getHeaders().get("topic"));
    JsonObject env = JsonParser.parseString(new String(out.getBody(), StandardCharsets.UTF_8))
        .getAsJsonObject();
    assertEquals("missing_key", env.get("reason").getAsString());
    assertEquals("tmall.user_profiles", env.get("topic").getAsString());

    Event keyed = line("{\"user_id\": 3}".getBytes(StandardCharsets.UTF_8));
    keyed.getHeaders().put("topic", "tmall.user_profiles");
    keyed.getHeaders().put("key", "3");
    assertSame(keyed, guard.intercept(keyed));
    // actions may go without a key (Kafka spreads them over partitions)
    Event action = line("{\"event_id\": \"x\"}".getBytes(StandardCharsets.UTF_8));
    assertSame(action, guard.intercept(action));
  }

  @Test
  public void acceptsMultibyteUtf8() {
    assertTrue(LineGuardInterceptor.isUtf8("größe 尺寸".getBytes(StandardCharsets.UTF_8)));
  }
}
