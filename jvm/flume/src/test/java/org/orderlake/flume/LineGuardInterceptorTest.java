package org.orderlake.flume;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Base64;
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

  private static JsonObject envelope(Event out) {
    return JsonParser.parseString(new String(out.getBody(), StandardCharsets.UTF_8))
        .getAsJsonObject();
  }

  @Test
  public void routesOversizeLinesToRejectsWithTheirHeadSizeAndDigest() {
    byte[] big = new byte[5000];
    Arrays.fill(big, (byte) 'x');
    Event out = guard.intercept(line(big));
    assertEquals("tmall.rejects", out.getHeaders().get("topic"));
    JsonObject env = envelope(out);
    assertEquals("oversize", env.get("reason").getAsString());
    assertEquals(5000, env.get("bytes").getAsInt());
    assertEquals("tmall.user_actions", env.get("topic").getAsString());
    byte[] head = Base64.getDecoder().decode(env.get("head_base64").getAsString());
    assertArrayEquals(Arrays.copyOf(big, LineGuardInterceptor.HEAD_BYTES), head);
    assertTrue(env.get("truncated").getAsBoolean());
    assertEquals(LineGuardInterceptor.sha256(big), env.get("sha256").getAsString());
  }

  @Test
  public void routesShortInvalidUtf8WithTheWholeLine() {
    byte[] bad = {'{', (byte) 0xC3, (byte) 0x28, '}'};
    JsonObject env = envelope(guard.intercept(line(bad)));
    assertEquals("invalid_utf8", env.get("reason").getAsString());
    assertEquals("e8MofQ==", env.get("head_base64").getAsString());
    assertFalse(env.get("truncated").getAsBoolean());
    // sha256 of the four bytes, as `printf '{\xc3(}' | sha256sum` prints it
    assertEquals(64, env.get("sha256").getAsString().length());
  }

  @Test
  public void theEnvelopeOfAnyLineUpToTheLimitFitsInAKafkaRecord() {
    // the worst case: a line just under the size limit that is refused for another reason, made
    // of bytes JSON escapes and base64 grows; its envelope must stay far below Kafka's 1 MiB
    LineGuardInterceptor real =
        new LineGuardInterceptor(1_000_000, "tmall.rejects", "topic", Set.of("tmall.user_profiles"));
    byte[] body = new byte[999_999];
    Arrays.fill(body, (byte) 0xFF);  // invalid UTF-8 throughout
    Event in = line(body);
    in.getHeaders().put("file", "/spool/host-1/" + "\u0001".repeat(100) + "actions.log");
    Event out = real.intercept(in);
    assertTrue(out.getBody().length < 8 * 1024);
    assertEquals(999_999, envelope(out).get("bytes").getAsInt());
  }

  @Test
  public void routesAnObjectNamingAFieldTwiceToRejectsWithTheName() {
    Event out = guard.intercept(
        line("{\"event_id\":\"a\",\"user_id\":1, \"user_id\" : 2}".getBytes(StandardCharsets.UTF_8)));
    assertEquals("tmall.rejects", out.getHeaders().get("topic"));
    JsonObject env = envelope(out);
    assertEquals("duplicate_key", env.get("reason").getAsString());
    assertEquals("user_id", env.get("key_name").getAsString());
  }

  @Test
  public void repeatedKeysCountOnlyAtTheTopLevelAndOutsideStrings() {
    String[] clean = {
      "{\"a\":{\"x\":1},\"b\":{\"x\":2}}",  // the same name in two nested objects
      "{\"a\":\"\\\"a\\\":\",\"b\":1}",  // a value that spells a key, escaped
      "{\"a\":[\"a\",\"a\"]}",  // a name repeated as array values
      "[\"a\",\"a\"]",  // not an object: the parse downstream names it
      "not json at all \"a\":\"a\":",
    };
    for (String text : clean) {
      byte[] body = text.getBytes(StandardCharsets.UTF_8);
      assertEquals(text, null, LineGuardInterceptor.repeatedKey(body));
    }
    assertEquals("a", LineGuardInterceptor.repeatedKey(
        "{\"a\":1,\"b\":{\"a\":2},\"a\":3}".getBytes(StandardCharsets.UTF_8)));
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
