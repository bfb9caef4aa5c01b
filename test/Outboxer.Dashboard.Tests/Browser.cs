using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Support.UI;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.Dashboard.Tests;

/// <summary>
/// Debian's chromium, headless, driven through its chromedriver (installed by <c>bash eng/browser.sh install</c>). A missing browser
/// fails the test with that hint; it is never skipped.
/// </summary>
internal sealed class Browser : IDisposable
{
    private Browser(ChromeDriver driver) => Driver = driver;

    public ChromeDriver Driver { get; }

    public static Browser Start()
    {
        var chromium = Find("OUTBOXER_CHROMIUM", "/usr/bin/chromium", "/usr/bin/chromium-browser");
        var chromedriver = Find("OUTBOXER_CHROMEDRIVER", "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver");
        Assert.True(chromium is not null && chromedriver is not null,
            "Debian's chromium and chromedriver are missing: run `bash eng/browser.sh install` (or set OUTBOXER_CHROMIUM and OUTBOXER_CHROMEDRIVER).");
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(chromedriver)!, Path.GetFileName(chromedriver));
        service.HideCommandPromptWindow = true;
        service.SuppressInitialDiagnosticInformation = true;
        var options = new ChromeOptions { BinaryLocation = chromium };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000", "--force-prefers-reduced-motion", "--lang=en-US");
        return new Browser(new ChromeDriver(service, options, TimeSpan.FromSeconds(60)));
    }

    /// <summary>Signs in as an operator through the test application's sign-in page, which sets the authentication cookie.</summary>
    public void SignInAsOperator(DashboardApp app)
    {
        Driver.Navigate().GoToUrl(new Uri(app.Root, "/signin").ToString());
        Assert.Equal("Signed in", Driver.Title);
    }

    public void GoTo(string url) => Driver.Navigate().GoToUrl(url);

    /// <summary>Clicks a link or a submit button and waits (at most 10 s) until the next page has replaced this one.</summary>
    public void ClickToNavigate(IWebElement element) => NavigateBy(element.Click);

    /// <summary>Does something that leaves the page (a click, a key) and waits (at most 10 s) until the next page has replaced this one.</summary>
    public void NavigateBy(Action action)
    {
        var page = Driver.FindElement(By.TagName("html"));
        action();
        new WebDriverWait(Driver, TimeSpan.FromSeconds(10)).Until(driver =>
        {
            try
            {
                _ = page.Enabled;
                return false;
            }
            catch (WebDriverException ex) when (ex is StaleElementReferenceException || ex.Message.Contains("does not belong to the document", StringComparison.Ordinal))
            {
                // The old page is gone (chromedriver reports it either way).
                return true;
            }
        });
        new WebDriverWait(Driver, TimeSpan.FromSeconds(10)).Until(driver => Equals(((IJavaScriptExecutor)driver).ExecuteScript("return document.readyState"), "complete"));
    }

    public IWebElement Find(string css) => Driver.FindElement(By.CssSelector(css));

    public IReadOnlyList<IWebElement> FindAll(string css) => Driver.FindElements(By.CssSelector(css));

    /// <summary>Saves a screenshot of the current page as artifacts/dashboard/&lt;name&gt;.png.</summary>
    public void Screenshot(string name)
    {
        var folder = Path.Combine(Repository.Root, "artifacts", "dashboard");
        Directory.CreateDirectory(folder);
        Driver.GetScreenshot().SaveAsFile(Path.Combine(folder, name + ".png"));
    }

    public void Dispose() => Driver.Quit();

    private static string? Find(string variable, params string[] candidates) =>
        Environment.GetEnvironmentVariable(variable) is { Length: > 0 } configured ? configured : candidates.FirstOrDefault(File.Exists);
}
