# frozen_string_literal: true

require_relative "helper"
require "kino/check"
require "set"

# Kino::Check: why an app is not Ractor-shareable, without touching it.
class CheckTest < Minitest::Test
  module StatelessApp
    def self.call(_env) = [200, {}, ["ok"]]
  end

  class CachingApp
    @cache = {}
    @name = "caching" # frozen: shareable, so no finding
    def self.call(_env) = [200, {}, [@cache.size.to_s]]
  end

  class CountingApp
    @@hits = 0 # rubocop:disable Style/ClassVars
    def self.call(_env) = [200, {}, [(@@hits += 1).to_s]]
  end

  # Plain objects with whatever ivars a test gives them.
  class Holder
    def initialize(**ivars)
      ivars.each { |name, value| instance_variable_set(:"@#{name}", value) }
    end

    def call(_env) = [200, {}, ["ok"]]
  end

  # Everything but inspect raises: the walk must not need any of it.
  class Hostile
    def initialize(value) = @value = value
    def inspect = raise("inspect exploded")
    def frozen? = raise("frozen? called")
    def instance_variables = raise("instance_variables called")
    def instance_variable_get(_name) = raise("instance_variable_get called")
    def class = raise("class called")
  end

  def report(app) = Kino::Check.report(app)
  def paths(result) = result[:findings].map(&:path)
  def messages(result) = result[:findings].map(&:message)

  # Where the check says a proc on +line+ of this file was defined.
  def site(line) = "#{File.expand_path(__FILE__).delete_prefix("#{Dir.pwd}/")}:#{line}"

  LAMBDA_LINE = __LINE__ + 1
  def lambda_in_method = ->(_env) { [200, {}, ["ok"]] }

  # a) a module with self.call and no state.
  def test_stateless_module_is_shareable
    assert_equal({ shareable: true, findings: [], more: 0, cut: false }, report(StatelessApp))
    assert_nil Kino::Check.first_blocker(StatelessApp)
  end

  # b) classes pass Ractor.shareable?, but their unshareable ivars do not.
  def test_class_level_ivar_is_a_finding
    assert Ractor.shareable?(CachingApp)
    result = report(CachingApp)
    refute result[:shareable]
    assert_equal ["app.@cache"], paths(result)
    assert_match(/class-level ivar holds \{\} \(Hash\)/, messages(result).first)
    assert_includes messages(result).first, "Ractor::IsolationError"
    assert_equal "app.@cache — #{messages(result).first}", Kino::Check.first_blocker(CachingApp)
  end

  def test_class_variable_is_a_finding
    result = report(CountingApp)
    refute result[:shareable]
    assert_equal ["app.@@hits"], paths(result)
    assert_includes messages(result).first, "Ractor::IsolationError"
  end

  # c) a lambda whose self is an ordinary object.
  def test_lambda_with_unshareable_self
    app = lambda_in_method
    result = report(app)
    refute result[:shareable]
    finding = result[:findings].first
    assert_equal "app (Proc at #{site(LAMBDA_LINE)})", finding.path
    assert_match(/\Aself is not shareable: #<CheckTest:.*\(CheckTest\) — build the proc with Kino.shareable_app/,
                 finding.message)
    assert_equal 1, result[:findings].size
  end

  # d) nil as self, but it captures unfrozen locals.
  def test_lambda_capturing_unshareable_locals
    secret = +"token"
    routes = { "/" => :root }
    app = nil.instance_eval { ->(_env) { [200, {}, [secret, routes.size.to_s]] } }
    line = __LINE__ - 1
    result = report(app)
    refute result[:shareable]
    at = "app (Proc at #{site(line)})"
    assert_equal ["#{at} capture `secret`", "#{at} capture `routes`"], paths(result)
    assert_equal ['captures `secret` = "token" (String), which is not frozen',
                  "captures `routes` = #{routes.inspect} (Hash), which is not frozen"], messages(result)
    refute(messages(result).any? { |m| m.include?("self") })
  end

  # Locals of the enclosing scope that the proc never touches (a config.ru
  # loader's, say) are no obstacle to Ractor.make_shareable: left out
  # where the bytecode shows which locals the proc uses.
  def test_untouched_locals_are_not_captures
    used = +"used"
    untouched = +"untouched"
    app = nil.instance_eval { ->(_env) { [200, {}, [used]] } }
    names = paths(report(app)).map { |path| path[/capture `(\w+)`/, 1] }
    if defined?(RubyVM::InstructionSequence)
      assert_equal ["used"], names
    else
      assert_equal %w[used untouched], names
    end
    assert untouched
  end

  def test_a_proc_that_may_eval_counts_every_local
    code = +"untouched.size"
    untouched = +"untouched"
    app = nil.instance_eval { ->(_env) { [200, {}, [eval(code).to_s]] } } # rubocop:disable Security/Eval
    names = paths(report(app)).map { |path| path[/capture `(\w+)`/, 1] }
    assert_equal %w[code untouched], names
    assert untouched
  end

  def test_lambda_with_shareable_self_and_captures_still_needs_to_be_made_shareable
    limit = 10
    app = nil.instance_eval { ->(_env) { [200, {}, [limit.to_s]] } }
    result = report(app)
    refute result[:shareable]
    assert_equal ["app"], paths(result)
    assert_match(/\(Proc\) was not made shareable — build it with Kino.shareable_app/, messages(result).first)
  end

  # e) an unfrozen string two levels down, inside a frozen Hash.
  def test_nested_unfrozen_string
    config = { name: +"kino", port: 80 }.freeze
    app = Holder.new(config: config)
    result = report(app)
    refute result[:shareable]
    assert_equal ["app", "app.@config", "app.@config[:name]"], paths(result)
    assert_equal ["CheckTest::Holder instance is not frozen",
                  "holds #{config.inspect} (Hash) (unshareable)",
                  '"kino" (String) is not frozen'], messages(result)
  end

  # f) an unfrozen Array of frozen strings.
  def test_unfrozen_array
    app = Holder.new(routes: %w[/ /about]).freeze
    result = report(app)
    assert_equal ["app.@routes"], paths(result)
    assert_equal ['holds ["/", "/about"] (Array), which is not frozen'], messages(result)
  end

  def test_unfrozen_hash_app_and_frozen_hash_with_unfrozen_value
    assert_equal ["#{{ a: 1 }.inspect} (Hash) is not frozen"], messages(report({ a: 1 }))
    result = report({ a: +"x" }.freeze)
    assert_equal ["app[:a]"], paths(result)
    assert_equal ["app[:a] — \"x\" (String) is not frozen"], result[:findings].map(&:to_s)
  end

  # g) a fully shareable object.
  def test_deeply_frozen_object_is_shareable
    app = Ractor.make_shareable(Holder.new(config: { name: +"kino", tags: [+"a"] }))
    assert_equal({ shareable: true, findings: [], more: 0, cut: false }, report(app))
  end

  # h) cycles end.
  def test_cycle_terminates
    app = Holder.new
    app.instance_variable_set(:@self, app)
    app.instance_variable_set(:@peer, Holder.new(back: app).freeze)
    result = Timeout.timeout(5) { report(app) }
    refute result[:shareable]
    assert_equal ["app"], paths(result)
    assert_equal ["CheckTest::Holder instance is not frozen"], messages(result)
  end

  # i) the budget: many findings, and many objects.
  def test_findings_are_capped
    app = Array.new(10_000) { |i| +"s#{i}" }
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    result = report(app)
    # the walk is bounded (MAX_NODES): it ends, even on a loaded machine;
    # how fast is bench material, not a test's
    assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, :<, 30
    assert_equal Kino::Check::MAX_FINDINGS, result[:findings].size
    assert_match(/\A\["s0", "s1", .*\.\.\. \(Array\) is not frozen\z/, result[:findings].first.message)
    assert_equal ["app[0]", '"s0" (String) is not frozen'], [result[:findings][1].path, result[:findings][1].message]
    assert result[:cut], "the walk stopped at its object budget"
    assert_equal Kino::Check::MAX_NODES - Kino::Check::MAX_FINDINGS, result[:more]
    io = StringIO.new
    Kino::Check.print_report(app, io)
    assert_includes io.string, "  … and at least #{result[:more]} more\n"
  end

  def test_the_printed_report_says_how_many_findings_it_left_out
    app = Array.new(25) { |i| +"s#{i}" }.freeze
    result = report(app)
    assert_equal [Kino::Check::MAX_FINDINGS, 5, false], [result[:findings].size, result[:more], result[:cut]]
    io = StringIO.new
    refute Kino::Check.print_report(app, io)
    assert_equal Kino::Check::MAX_FINDINGS, io.string.lines.grep(/\A  - /).size
    assert_includes io.string.lines, "  … and 5 more\n"
  end

  def test_node_budget_ends_the_walk
    shared = +"shared"
    app = Array.new(20_000) { Holder.new(text: shared).freeze }.freeze
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    result = report(app)
    assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, :<, 2
    assert_equal ["app[0].@text"], paths(result)
  end

  def test_deep_nesting_stops_without_exhausting_the_stack
    app = 10_000.times.reduce([+"leaf"]) { |inner, _| [inner].freeze }
    result = report(app)
    refute result[:shareable]
    assert_equal ["app — not Ractor-shareable (Ractor.shareable? is false)"], result[:findings].map(&:to_s)
  end

  # j) nothing is frozen, made shareable or otherwise changed.
  def test_report_never_mutates
    text = +"mutable"
    list = [+"a", { k: +"v" }]
    config = { list: list, text: text }.freeze
    app = Holder.new(config: config, block: nil.instance_eval { ->(_env) { text } })
    reachable = [app, config, text, list, list[0], list[1], list[1][:k]]
    before = reachable.map(&:frozen?)
    Kino::Check.report(app)
    Kino::Check.print_report(app, StringIO.new)
    Kino::Check.first_blocker(app)
    assert_equal before, reachable.map(&:frozen?)
    assert_equal [false, true, false, false, false, false, false], before
    refute reachable.any? { |obj| Ractor.shareable?(obj) }
    assert_equal %i[@config @block], app.instance_variables
  end

  # k) the printed report.
  def test_print_report_for_a_shareable_app
    io = StringIO.new
    assert_equal true, Kino::Check.print_report(StatelessApp, io)
    assert_equal "check: app is Ractor-shareable — mode :ractor will work\n", io.string
  end

  def test_print_report_for_an_unshareable_app
    io = StringIO.new
    app = Holder.new(routes: %w[/ /about])
    assert_equal false, Kino::Check.print_report(app, io)
    lines = io.string.lines(chomp: true)
    assert_equal "check: app is NOT Ractor-shareable", lines[0]
    assert_equal "  - app — CheckTest::Holder instance is not frozen", lines[1]
    assert_equal '  - app.@routes — holds ["/", "/about"] (Array), which is not frozen', lines[2]
    assert_match(/\A  hints: freeze configuration at boot; .*Kino.shareable_app .*Ractor-local storage.*mode :threaded\z/,
                 lines[3])
    assert_equal 4, lines.size
  end

  def test_objects_that_fight_back
    result = report(Hostile.new(+"x"))
    assert_equal ["app", "app.@value"], paths(result)
    assert_equal ["CheckTest::Hostile instance is not frozen", 'holds "x" (String), which is not frozen'], messages(result)
    result = report(Holder.new(hostile: Hostile.new(1)).freeze)
    assert_equal ["app.@hostile — holds #<CheckTest::Hostile>, which is not frozen"], result[:findings].map(&:to_s)

    blank = BasicObject.new
    result = report(blank)
    assert_match(/\A#<BasicObject:0x\h+> \(BasicObject\) is not frozen\z/, messages(result).first)
  end

  def test_native_objects_and_methods
    result = report(Holder.new(lock: Mutex.new.freeze, handler: method(:site)).freeze)
    assert_equal ["app.@lock", "app.@handler"], paths(result)
    assert(messages(result).all? { |m| m.include?("cannot cross ractors, frozen or not") })
  end

  def test_struct_range_set_and_hash_default
    config = Struct.new(:db).new({}).freeze
    assert_equal ["app.db"], paths(report(config))
    assert_equal ["app.begin"], paths(report(Range.new(+"a", "b").freeze))
    assert_equal ["app element [1]"], paths(report(Set[[1]].freeze))
    result = report(Hash.new { |hash, key| hash[key] = [] }.freeze)
    assert_equal "app.default", paths(result).first
    assert_match(/\Aapp\.default \(Proc at .*\) — self is not shareable/, result[:findings][1].to_s)
  end

  def test_data_members
    skip "Data needs Ruby 3.2" unless defined?(::Data) && ::Data.respond_to?(:define)
    point = ::Data.define(:label).new(label: +"p")
    assert_equal ["app.label"], paths(report(point))
  end

  def test_findings_are_frozen_values
    finding = report(Holder.new(a: 1)).fetch(:findings).first
    assert finding.frozen?
    assert Ractor.shareable?(finding)
    assert_equal "app — CheckTest::Holder instance is not frozen", finding.to_s
    assert report(Holder.new)[:findings].frozen?
  end
end
